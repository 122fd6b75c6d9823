"""Model cards built from fake run folders (tiny config.json + safetensors), checked field by field."""

import json
import os
import re
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from safetensors.torch import save_file

from hftk.errors import HftkError
from hftk.reporting.model_card import point_card_at_repo, render_model_card, write_model_card

CONFIG = {
    "model_type": "hftk_bert",
    "architectures": ["HftkBertForMaskedLM"],
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "vocab_size": 100,
    "max_position_embeddings": 64,
    "position_embedding_type": "learned",
    "norm_type": "layernorm",
    "pre_norm": False,
    "auto_map": {
        "AutoConfig": "configuration_hftk_bert.HftkBertConfig",
        "AutoModelForMaskedLM": "modeling_hftk_bert.HftkBertForMaskedLM",
    },
}
METRICS = {
    "eval_loss": 2.1,
    "perplexity": 8.2,
    "eval_accuracy": 0.91,
    "eval_runtime": 3.25,
    "eval_samples_per_second": 120.5,
    "train_loss": 2.6,
    "epoch": 3.0,
    "eval_note": "not a number",
    "eval_converged": True,
}
# What must reach the model-index: the numeric eval results, not timings, train loss or non-numbers.
EXPECTED_RESULTS = {"eval_loss": 2.1, "perplexity": 8.2, "eval_accuracy": 0.91}
RECIPE = "task: mlm\nmodel:\n  hidden_size: 32\n  num_hidden_layers: 2\ntraining:\n  learning_rate: 0.0005\n  epochs: 3\n"


def tensors():
    # 100*32 + 64*32 + 32 + 32*100 + 100 = 8580 parameters, counted by hand below.
    return {
        "embeddings.word_embeddings.weight": torch.zeros(100, 32),
        "embeddings.position_embeddings.weight": torch.zeros(64, 32),
        "norm.weight": torch.ones(32),
        "lm_head.weight": torch.zeros(100, 32),
        "lm_head.bias": torch.zeros(100),
    }


def make_run(tmp_path: Path, config=CONFIG, metrics=METRICS, recipe=RECIPE, loss_png=True) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    save_file(tensors(), str(folder / "model.safetensors"))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    if recipe is not None:
        (folder / "recipe.yaml").write_text(recipe)
    if loss_png:
        (folder / "loss.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return folder


def front_matter(text: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", text, flags=re.S)
    assert match, text[:200]
    return yaml.safe_load(match.group(1))


def test_metadata_parses_and_model_index_holds_exactly_the_eval_metrics(tmp_path):
    folder = make_run(tmp_path)
    text = render_model_card(folder, datasets=["wikitext"], repo_id="alice/tiny-bert")
    meta = front_matter(text)

    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "fill-mask"
    assert meta["tags"] == ["hftk", "hftk_bert", "custom_code"]
    assert meta["datasets"] == ["wikitext"]
    assert "base_model" not in meta
    [entry] = meta["model-index"]
    assert entry["name"] == "tiny-bert"
    [result] = entry["results"]
    assert result["task"]["type"] == "fill-mask"
    assert result["dataset"]["type"] == "wikitext"
    got = {m["name"]: m["value"] for m in result["metrics"]}
    assert got == EXPECTED_RESULTS
    assert {m["name"]: m["type"] for m in result["metrics"]} == {
        "eval_loss": "loss",
        "perplexity": "perplexity",
        "eval_accuracy": "accuracy",
    }
    assert sorted(meta["metrics"]) == ["accuracy", "loss", "perplexity"]

    # huggingface_hub reads it back into the same EvalResults (what the Hub does with the card).
    card = ModelCard(text)
    assert {r.metric_name: r.metric_value for r in card.data.eval_results} == EXPECTED_RESULTS
    assert card.data.pipeline_tag == "fill-mask"


def test_body_describes_architecture_parameters_recipe_results_and_loss(tmp_path):
    folder = make_run(tmp_path)
    text = render_model_card(folder, repo_id="alice/tiny-bert")

    assert "| Layers | 2 |" in text
    assert "| Hidden size | 32 |" in text
    assert "| Attention heads | 2 |" in text
    assert "| Positional encoding | learned absolute |" in text
    assert "| Normalization | LayerNorm (post-norm) |" in text
    assert "| Vocabulary size | 100 |" in text
    # Parameter count from the safetensors header: independent sum of numel over the saved tensors.
    n = sum(t.numel() for t in tensors().values())
    assert n == 100 * 32 + 64 * 32 + 32 + 32 * 100 + 100 == 8580
    assert "| Parameters | 8,580 (8.6K) |" in text

    recipe_block = re.search(r"```yaml\n(.*?)```", text, flags=re.S).group(1)
    assert yaml.safe_load(recipe_block) == yaml.safe_load(RECIPE)
    for key, value in EXPECTED_RESULTS.items():
        assert f"| {key} | {value:.4f} |" in text
    assert "| eval_runtime | 3.2500 |" in text  # every metric is in the table, even bookkeeping ones
    assert "![loss](loss.png)" in text


def test_decoder_config_vocabulary(tmp_path):
    config = {
        **CONFIG,
        "model_type": "hftk_gpt",
        "architectures": ["HftkGptForCausalLM"],
        "position_embedding_type": "rope",
        "rope_base": 10000.0,
        "norm_type": "rmsnorm",
        "pre_norm": True,
    }
    text = render_model_card(make_run(tmp_path, config=config))
    assert "| Positional encoding | rotary (RoPE, base 10000) |" in text
    assert "| Normalization | RMSNorm (pre-norm) |" in text
    assert front_matter(text)["tags"] == ["hftk", "hftk_gpt", "custom_code"]


def test_card_written_in_a_staging_folder_is_named_after_the_run(tmp_path):
    run = make_run(tmp_path)
    staging = run / ".final.tmp"
    staging.mkdir()
    for name in ("config.json", "model.safetensors", "metrics.json"):
        (staging / name).write_bytes((run / name).read_bytes())
    text = write_model_card(staging).read_text()
    assert text.split("---\n", 2)[2].lstrip().startswith("# run\n")
    assert front_matter(text)["model-index"][0]["name"] == "run"
    assert f'model_id = "{run}"' in text and ".final.tmp" not in text


def test_point_card_at_repo_rewrites_only_the_generated_snippet(tmp_path):
    folder = make_run(tmp_path)
    write_model_card(folder)
    before = (folder / "README.md").read_text()
    assert f'model_id = "{folder}"' in before
    assert point_card_at_repo(folder, "alice/tiny-bert")
    after = (folder / "README.md").read_text()
    assert after == before.replace(f'model_id = "{folder}"', 'model_id = "alice/tiny-bert"')
    assert not point_card_at_repo(folder, "alice/tiny-bert")  # already pointing there

    handwritten = '---\nlicense: mit\n---\n# Mine\n\n```python\nmodel_id = "keep/me"\n```\n'
    (folder / "README.md").write_text(handwritten)
    assert not point_card_at_repo(folder, "alice/tiny-bert")
    assert (folder / "README.md").read_text() == handwritten
    broken = '---\ntags: [hftk\n---\nmodel_id = "x"\n'
    (folder / "README.md").write_text(broken)
    assert not point_card_at_repo(folder, "alice/tiny-bert")
    assert (folder / "README.md").read_text() == broken


def test_sharded_weights_are_all_counted(tmp_path):
    folder = make_run(tmp_path)
    (folder / "model.safetensors").unlink()
    parts = list(tensors().items())
    save_file(dict(parts[:2]), str(folder / "model-00001-of-00002.safetensors"))
    save_file(dict(parts[2:]), str(folder / "model-00002-of-00002.safetensors"))
    assert "| Parameters | 8,580 (8.6K) |" in render_model_card(folder)


def test_missing_optional_files_are_said_not_invented(tmp_path):
    folder = make_run(tmp_path, metrics=None, recipe=None, loss_png=False)
    text = render_model_card(folder)
    meta = front_matter(text)
    assert "model-index" not in meta and "metrics" not in meta
    assert "![loss]" not in text
    assert "No `recipe.yaml` was saved" in text
    assert "No evaluation metrics were saved" in text


@pytest.mark.parametrize(
    "architecture, tag, auto_class",
    [
        ("HftkBertForMaskedLM", "fill-mask", "AutoModelForMaskedLM"),
        ("HftkGptForCausalLM", "text-generation", "AutoModelForCausalLM"),
        ("HftkBertForSequenceClassification", "text-classification", "AutoModelForSequenceClassification"),
        ("HftkBertForQuestionAnswering", "question-answering", "AutoModelForQuestionAnswering"),
        ("HftkBertForTokenClassification", "token-classification", "AutoModelForTokenClassification"),
    ],
)
def test_pipeline_tag_and_usage_snippet_follow_the_architecture(tmp_path, architecture, tag, auto_class):
    folder = make_run(tmp_path, config={**CONFIG, "architectures": [architecture]})
    text = render_model_card(folder, repo_id="alice/tiny")
    assert front_matter(text)["pipeline_tag"] == tag
    usage = text.split("## Usage", 1)[1]
    assert f'{auto_class}.from_pretrained(model_id, trust_remote_code=True)' in usage
    assert f'pipeline("{tag}", model=model_id, trust_remote_code=True)' in usage
    assert 'model_id = "alice/tiny"' in usage


def test_task_base_model_and_tags_arguments(tmp_path):
    folder = make_run(tmp_path)
    meta = front_matter(
        render_model_card(folder, task="text-classification", base_model="alice/tiny-bert", extra_tags=["glue"])
    )
    assert meta["pipeline_tag"] == "text-classification"
    assert meta["base_model"] == "alice/tiny-bert"
    assert meta["tags"] == ["hftk", "hftk_bert", "custom_code", "glue"]

    # A local path is no Hub id: it is named in the text but kept out of the metadata the Hub validates.
    text = render_model_card(folder, base_model=str(tmp_path), datasets=[str(tmp_path / "train.txt")])
    assert "base_model" not in front_matter(text) and "datasets" not in front_matter(text)
    assert f"fine-tuned from `{tmp_path}`" in text


def test_write_is_atomic_and_replaces_the_old_card(tmp_path, monkeypatch):
    folder = make_run(tmp_path)
    (folder / "README.md").write_text("old card\n")
    before = set(os.listdir(folder))

    path = write_model_card(folder, repo_id="alice/tiny-bert")
    assert path == folder / "README.md"
    assert set(os.listdir(folder)) == before  # nothing but README.md touched, no temp file left
    assert path.read_text() == render_model_card(folder, repo_id="alice/tiny-bert")
    assert ModelCard.load(path).data.library_name == "transformers"

    # A failure at the final rename keeps the previous card and cleans the temp file up.
    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    previous = path.read_text()
    with pytest.raises(OSError):
        write_model_card(folder, repo_id="bob/other")
    assert path.read_text() == previous
    assert set(os.listdir(folder)) == before


def test_bad_folders_raise_one_line_errors(tmp_path):
    with pytest.raises(HftkError, match="does not exist"):
        render_model_card(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HftkError, match="no config.json"):
        render_model_card(tmp_path / "empty")
    folder = make_run(tmp_path)
    (folder / "metrics.json").write_text("{not json")
    with pytest.raises(HftkError, match="metrics.json is not valid JSON"):
        render_model_card(folder)


# --- issue 17 item 11: only evaluation scores in model-index, named data, a licence -----------------

PRETRAIN_METRICS = {  # the keys `hftk pretrain` writes
    "eval_loss": 4.8,
    "perplexity": 121.5,
    "train_loss": 4.9,
    "train_steps": 515,
    "tokens_seen": 2109440,
    "tokens_per_second": 5100.5,
    "train_runtime_seconds": 360.2,
    "wall_time_seconds": 371.9,
    "num_parameters": 5300000,
}
TRAINING_FACTS = ("train_loss", "train_steps", "tokens_seen", "tokens_per_second", "train_runtime_seconds", "wall_time_seconds", "num_parameters")


def pretrain_recipe_yaml(**data) -> str:
    from hftk.recipe import PretrainRecipe, dump_recipe, load_recipe

    recipe = load_recipe(PretrainRecipe, "pretrain-default")
    for key, value in data.items():
        setattr(recipe.data, key, value)
    return dump_recipe(recipe)


def hub_parse(text: str):
    """What the Hub does with the metadata, offline: ModelCard parses it, model-index becomes EvalResults."""
    from huggingface_hub import ModelCardData
    from huggingface_hub.repocard_data import model_index_to_eval_results

    card = ModelCard(text)
    meta = front_matter(text)
    name, results = model_index_to_eval_results(meta["model-index"])
    rebuilt = ModelCardData(**meta)  # round-trips without complaint
    assert rebuilt.license == card.data.license
    return card, name, results


def test_main_job_card_lists_only_eval_scores_on_the_named_austen_corpus_and_a_licence(tmp_path):
    folder = make_run(tmp_path, metrics=PRETRAIN_METRICS, recipe=pretrain_recipe_yaml())
    text = render_model_card(folder)
    card, name, results = hub_parse(text)
    assert name == "run"
    assert {r.metric_name: r.metric_value for r in results} == {"eval_loss": 4.8, "perplexity": 121.5}
    for result in results:
        assert result.dataset_type == "austen" and result.dataset_split == "validation"
        assert result.dataset_name == "Jane Austen's novels (public domain, shipped with hftk), held-out 2 %"
    assert card.data.license == "apache-2.0"
    assert "datasets" not in front_matter(text)  # the corpus is not a Hub data set; none is claimed
    assert "type: custom" not in text and "name: custom" not in text
    facts = text.split("### Training facts", 1)[1].split("###", 1)[0]
    for key in TRAINING_FACTS:
        assert f"| {key} | {_fmt(PRETRAIN_METRICS[key])} |" in facts
        assert key not in repr(front_matter(text)["model-index"])
    assert "on Jane Austen's novels (public domain, shipped with hftk)." in text
    assert "## Licence\n\n`apache-2.0`: the training text (Jane Austen's novels) is in the public domain" in text


def _fmt(value):
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def test_local_pretraining_files_are_named_and_the_licence_is_left_to_the_user(tmp_path):
    recipe = pretrain_recipe_yaml(train_files=["/data/corpus/news.txt", "/data/corpus/blogs.txt"], validation_files=["/data/heldout.txt"])
    text = render_model_card(make_run(tmp_path, metrics=PRETRAIN_METRICS, recipe=recipe))
    card, _, results = hub_parse(text)
    assert {(r.dataset_type, r.dataset_name, r.dataset_split) for r in results} == {("heldout", "data/heldout.txt (local file)", "validation")}
    assert "on corpus/news.txt, corpus/blogs.txt (local files)." in text
    assert card.data.license == "other" and "set `output.license`" in text


def finetune_recipe_yaml(folder: Path, **data) -> str:
    from hftk.recipe import FinetuneRecipe, dump_recipe

    recipe = FinetuneRecipe(task="classification")
    recipe.model.name_or_path = str(folder)
    for key, value in data.items():
        setattr(recipe.data, key, value)
    return dump_recipe(recipe)


def test_finetuned_card_names_validation_and_test_data_and_inherits_the_base_licence(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "README.md").write_text("---\nlicense: mit\n---\n# base\n")
    recipe = finetune_recipe_yaml(
        base, train_file="/d/fine_foods/train.jsonl", validation_file="/d/fine_foods/dev.jsonl", test_file="/d/fine_foods/test.jsonl"
    )
    metrics = {"eval_accuracy": 0.81, "eval_samples": 400, "test_accuracy": 0.79, "test_samples": 1000, "train_steps": 300, "best_step": 200}
    text = render_model_card(make_run(tmp_path, metrics=metrics, recipe=recipe), base_model=str(base))
    card, _, results = hub_parse(text)
    got = {r.metric_name: (r.metric_type, r.metric_value, r.dataset_type, r.dataset_name, r.dataset_split) for r in results}
    assert got == {
        "eval_accuracy": ("accuracy", 0.81, "fine_foods", "fine_foods/dev.jsonl (local file)", "validation"),
        "test_accuracy": ("accuracy", 0.79, "fine_foods", "fine_foods/test.jsonl (local file)", "test"),
    }
    assert card.data.license == "mit" and f"inherited from the base model `{base}`" in text
    assert "| eval_samples | 400 |" in text and "| best_step | 200 |" in text  # facts, not results

    (base / "README.md").write_text("# no metadata\n")
    assert ModelCard(render_model_card(tmp_path / "run", base_model=str(base))).data.license == "other"


def test_recipe_licence_wins_and_hub_data_goes_into_datasets_metadata(tmp_path):
    from hftk.recipe import FinetuneRecipe, dump_recipe

    recipe = FinetuneRecipe(task="glue")
    recipe.data.glue_task = "sst2"
    recipe.output.license = "cc-by-4.0"
    text = render_model_card(make_run(tmp_path, metrics={"eval_accuracy": 0.9}, recipe=dump_recipe(recipe)))
    card, _, [result] = hub_parse(text)
    assert card.data.license == "cc-by-4.0" and "set by the recipe (`output.license`)" in text
    assert card.data.datasets == ["nyu-mll/glue"]
    assert (result.dataset_type, result.dataset_config, result.dataset_split) == ("nyu-mll/glue", "sst2", "validation")


def test_licence_key_is_checked_on_load():
    from hftk.recipe import FinetuneRecipe, load_recipe

    with pytest.raises(HftkError, match="output.license"):
        load_recipe(FinetuneRecipe, "finetune-classification", ["output.license=Not A Licence"])
