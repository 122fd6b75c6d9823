"""The `hftk` command line: help texts, `hftk recipes`, and every shipped recipe validates."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from hftk.recipe import FinetuneRecipe, PretrainRecipe, load_recipe, recipe_paths


def run_hftk(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "hftk", *args], capture_output=True, text=True, env=env, timeout=300)


def test_top_level_help_lists_commands():
    result = run_hftk("--help")
    assert result.returncode == 0, result.stderr
    for command in ("pretrain", "finetune", "evaluate", "distill", "quantize", "recipes", "convert", "push"):
        assert command in result.stdout


def test_pretrain_help_explains_options():
    result = run_hftk("pretrain", "--help")
    assert result.returncode == 0, result.stderr
    for option in ("--set", "--output-dir", "--resume", "--overwrite", "--push-to-hub"):
        assert option in result.stdout
    assert "pretrain-default" in result.stdout


def test_finetune_help_explains_options():
    result = run_hftk("finetune", "--help")
    assert result.returncode == 0, result.stderr
    for option in ("--model", "--recipe", "--task", "--set", "--output-dir", "--resume", "--overwrite"):
        assert option in result.stdout
    for task in ("glue", "classification", "qa", "ner", "generation", "lora.r"):
        assert task in result.stdout


def test_recipes_list_names_every_shipped_recipe():
    result = run_hftk("recipes", "list")
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert sorted(names) == sorted(recipe_paths())
    assert {"pretrain-default", "finetune-classification", "finetune-glue", "finetune-qa", "finetune-ner", "finetune-generation"} <= set(names)


def test_recipes_show_prints_the_file():
    result = run_hftk("recipes", "show", "pretrain-default")
    assert result.returncode == 0, result.stderr
    assert result.stdout == recipe_paths()["pretrain-default"].read_text()


def test_recipes_show_unknown_is_one_line_error():
    result = run_hftk("recipes", "show", "no-such-recipe")
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [result.stderr.strip()]
    assert "hftk recipes list" in result.stderr


@pytest.mark.parametrize("name", sorted(recipe_paths()))
def test_every_shipped_recipe_validates(name):
    path = recipe_paths()[name]
    raw = yaml.safe_load(path.read_text())
    if name.startswith("pipeline-"):  # `hftk run` pipelines: their own schema, every stage's recipe built
        from hftk.recipe.pipeline import load_pipeline

        loaded = load_pipeline(name)
        assert loaded is not None
        return
    from hftk.recipe.distill import DistillRecipe

    recipe_class = FinetuneRecipe if "task" in raw else PretrainRecipe
    if name.startswith("distill-"):
        recipe_class = DistillRecipe
    recipe = load_recipe(recipe_class, name)
    if recipe_class is DistillRecipe:
        assert name == f"distill-{recipe.task}"
    elif recipe_class is FinetuneRecipe:
        assert name == f"finetune-{recipe.task}"
    # Every key in the file survived validation (extra keys are refused, so nothing was ignored).
    dumped = recipe.model_dump(mode="json")
    for section, values in raw.items():
        if isinstance(values, dict):
            for key, value in values.items():
                if not isinstance(value, dict):
                    assert dumped[section][key] == value or float(dumped[section][key]) == float(value), (section, key)


def test_unknown_task_is_one_line_error(tmp_path):
    result = run_hftk("finetune", "sentiment", "--model", str(tmp_path), "-o", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "sentiment" in errors[0] and "classification" in errors[0]
    assert "Traceback" not in result.stderr


def test_import_hftk_cli_loads_neither_torch_nor_transformers():
    """`hftk --help` must be quick: the CLI module imports its heavy dependencies only inside commands."""
    code = "import sys, hftk.cli; print(sorted(m for m in ('torch', 'transformers', 'accelerate', 'datasets') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_import_hftk_still_registers_the_auto_classes_when_transformers_comes_later():
    code = (
        "import sys, hftk; assert 'transformers' not in sys.modules\n"
        "from transformers import AutoConfig, AutoModelForMaskedLM\n"
        "config = AutoConfig.for_model('hftk_bert', hidden_size=32, num_hidden_layers=1, num_attention_heads=2, "
        "intermediate_size=64, vocab_size=50)\n"
        "print(type(AutoModelForMaskedLM.from_config(config)).__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "HftkBertForMaskedLM"


def test_flags_are_shown_as_flags_and_take_no_value():
    for command in (["pretrain"], ["finetune"], ["run"], ["convert"], ["push"], ["recipes", "show"]):
        result = run_hftk(*command, "--help")
        assert result.returncode == 0, result.stderr
        assert "<bool>" not in result.stdout and "BOOLEAN" not in result.stdout, result.stdout
    assert "--output-dir" in run_hftk("run", "--help").stdout and "--overwrite" in run_hftk("convert", "--help").stdout
    result = run_hftk("pretrain", "--resume", "true")  # read as a recipe named "true": say why
    assert result.returncode == 2 and "take no value" in result.stderr and "Traceback" not in result.stderr


def test_recipes_show_resolved_lists_every_key_a_run_resolves():
    result = run_hftk("recipes", "show", "finetune-qa", "--resolved")
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    recipe = load_recipe(FinetuneRecipe, "finetune-qa")
    assert resolved == recipe.model_dump(mode="json")
    shipped = yaml.safe_load(recipe_paths()["finetune-qa"].read_text())
    count = lambda d: sum(count(v) if isinstance(v, dict) and v else 1 for v in d.values())  # noqa: E731
    assert count(resolved) > 2 * count(shipped)
    with_set = yaml.safe_load(run_hftk("recipes", "show", "pretrain-default", "--set", "training.max_steps=7").stdout)
    assert with_set["training"]["max_steps"] == 7 and with_set["training"]["adam_beta2"] == 0.98
    plain = run_hftk("recipes", "show", "pretrain-default")
    assert "--resolved" in plain.stderr


@pytest.mark.parametrize(
    "override, needle",
    [
        ("training.lerning_rate=1", "--set training.lerning_rate: unknown recipe key training.lerning_rate; did you mean training.learning_rate?"),
        ("trainig.max_steps=1", "did you mean training?"),
        ("model.config.hiden_size=8", "did you mean model.config.hidden_size?"),
        ("model.config.classifier_pooling=foo", "--set model.config.classifier_pooling"),
    ],
)
def test_set_typos_are_blamed_on_the_key_with_a_suggestion(override, needle):
    from hftk.errors import HftkError

    with pytest.raises(HftkError) as error:
        load_recipe(PretrainRecipe, "pretrain-default", [override])
    assert needle in str(error.value) and "\n" not in str(error.value)
    assert "pretrain-default.yaml" not in str(error.value)  # the recipe file is not at fault
