"""Recipes: typed validation with one-line errors naming the key; --set overrides."""

import pytest

from hftk.errors import HftkError
from hftk.recipe import FinetuneRecipe, PretrainRecipe, apply_overrides, load_recipe


def test_overrides_parse_yaml_values_and_nest():
    data = apply_overrides({}, ["training.learning_rate=3e-4", "data.train_files=[a.txt, b.txt]", "output.overwrite=true"])
    assert data == {"training": {"learning_rate": 3e-4}, "data": {"train_files": ["a.txt", "b.txt"]}, "output": {"overwrite": True}}
    recipe = load_recipe(PretrainRecipe, None, ["data.train_files=corpus.txt", "objective=clm"])
    assert recipe.data.train_files == ["corpus.txt"]  # a single path becomes a list
    assert recipe.model.type == "hftk_gpt" and recipe.tokenizer.kind == "bpe"  # derived from the objective


@pytest.mark.parametrize(
    "override, needle",
    [
        ("training.lerning_rate=1", "unknown recipe key training.lerning_rate"),
        ("training.learning_rate=fast", "training.learning_rate"),
        ("training.learning_rate=-1", "training.learning_rate"),
        ("model.config.hiden_size=8", "model.config.hiden_size"),
        ("data.max_seq_length=1024", "max_position_embeddings"),
        ("training.lr_scheduler_type=zigzag", "training.lr_scheduler_type"),
        ("objective=mlm2", "objective"),
        ("training", "KEY=VALUE"),
    ],
)
def test_bad_values_name_the_key(override, needle):
    with pytest.raises(HftkError) as error:
        load_recipe(PretrainRecipe, None, [override])
    message = str(error.value)
    assert needle in message and "\n" not in message


def test_model_type_must_fit_objective():
    with pytest.raises(HftkError, match="does not fit objective"):
        load_recipe(PretrainRecipe, None, ["objective=clm", "model.type=hftk_bert"])


def test_yaml_syntax_and_missing_recipe(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("training:\n  learning_rate: [1\n")
    with pytest.raises(HftkError, match="line 3.*YAML syntax error|YAML syntax error"):
        load_recipe(PretrainRecipe, broken)
    with pytest.raises(HftkError, match="not found"):
        load_recipe(PretrainRecipe, tmp_path / "absent.yaml")


def test_finetune_recipe_requires_a_known_task():
    assert load_recipe(FinetuneRecipe, None, ["task=qa"]).training.learning_rate is None  # by model, at run time
    with pytest.raises(HftkError, match="task"):
        load_recipe(FinetuneRecipe, None, ["task=translate"])


def test_metric_for_best_model_takes_the_trainer_spelling():
    """`accuracy` and `eval_accuracy` name the same metric, as in transformers' Trainer."""
    for given in ("accuracy", "eval_accuracy"):
        recipe = load_recipe(FinetuneRecipe, None, ["task=classification", f"training.metric_for_best_model={given}"])
        assert recipe.training.metric_for_best_model == "eval_accuracy"
    assert load_recipe(FinetuneRecipe, None, ["task=classification"]).training.metric_for_best_model is None
