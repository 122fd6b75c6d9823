"""`hftk finetune --model new` (a fresh model, its tokenizer trained on the task's text) and
`--model random:FOLDER` (a folder's random-init twin), end to end as a user runs them.

Tiny sizes (d 32, one layer, a 400-token vocabulary), 40 Bible verse pairs, one or two steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.commands.test_finetune import DATA, assert_one_line_error, run_hftk, write_rows
from tests.tasks.tiny_seq2seq import bible_rows

TINY_NEW = [
    "model.new.config.hidden_size=32",
    "model.new.config.intermediate_size=64",
    "model.new.config.num_hidden_layers=1",
    "model.new.config.num_attention_heads=2",
    "model.new.tokenizer.vocab_size=400",
]
QUICK = [
    "training.max_steps=2",
    "training.per_device_train_batch_size=8",
    "training.eval_steps=1000",
    "training.save_steps=null",
    "training.report_to=[]",
    "training.num_threads=1",
    "data.max_seq_length=48",
    "generation.max_new_tokens=8",
    "generation.num_beams=1",
]
ES_EN = ["data.source_lang=es", "data.target_lang=en"]


@pytest.fixture(scope="module")
def bible(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bible")
    return {
        "train": write_rows(root / "train.jsonl", bible_rows("train", 40, shared=DATA.parent)),
        "validation": write_rows(root / "validation.jsonl", bible_rows("validation", 4, shared=DATA.parent)),
    }


def translate(model: str, out: Path, bible: dict[str, str], *sets: str) -> list[str]:
    args = ["finetune", "translation", "--model", model, "-o", str(out)]
    files = [f"data.train_file={bible['train']}", f"data.validation_file={bible['validation']}"]
    for item in (*QUICK, *ES_EN, *files, *sets):
        args += ["--set", item]
    return args


def same_tokenizer(first: Path, second: Path) -> bool:
    """Same vocabulary, merges and special tokens (tokenizer.json also records the last truncation setting used)."""
    def facts(folder: Path) -> tuple:
        saved = json.loads((folder / "tokenizer.json").read_text())
        return saved["model"], saved["added_tokens"], saved["post_processor"]

    return facts(first) == facts(second)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_a_fresh_model_is_reproducible_and_its_tokenizer_is_trained_on_both_sides(tmp_path, bible):
    from hftk.data.tokenizer import train_tokenizer

    runs = {name: tmp_path / name for name in ("first", "second", "other_seed")}
    run_hftk(*translate("new", runs["first"], bible, *TINY_NEW), check=True)
    run_hftk(*translate("new", runs["second"], bible, *TINY_NEW), check=True)
    run_hftk(*translate("new", runs["other_seed"], bible, *TINY_NEW, "training.seed=7"), check=True)

    first, second, other = (weights(folder) for folder in runs.values())
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)  # the seed draws the weights
    tokenizer = (runs["first"] / "tokenizer.json").read_text()
    assert same_tokenizer(runs["first"], runs["second"])

    # The saved tokenizer is the one train_tokenizer makes from both sides of the training pairs.
    rows = [json.loads(line)["translation"] for line in Path(bible["train"]).read_text().splitlines()]
    reference = train_tokenizer([row[side] for row in rows for side in ("es", "en")], kind="seq2seq", vocab_size=400)
    saved = json.loads(tokenizer)["model"]["vocab"]
    assert saved == json.loads(reference.backend_tokenizer.to_str())["model"]["vocab"]
    assert {"Ġthe", "Ġque"} <= set(saved)  # a word of each language

    config = json.loads((runs["first"] / "config.json").read_text())
    assert config["model_type"] == "hftk_seq2seq" and config["hidden_size"] == 32 and config["vocab_size"] == len(reference)
    assert json.loads((runs["first"] / "tokenizer_config.json").read_text())["model_max_length"] == config["max_position_embeddings"]
    recipe = (runs["first"] / "recipe.yaml").read_text()
    assert "name_or_path: new\n" in recipe and "type: hftk_seq2seq" in recipe  # the run says what it started from


def test_the_random_twin_keeps_config_and_tokenizer_and_draws_new_weights(tmp_path, bible):
    from tests.tasks.tiny_seq2seq import save_tiny_hftk, seq2seq_tokenizer

    rows = bible_rows("train", 40, shared=DATA.parent)
    tokenizer = seq2seq_tokenizer([row["translation"][side] for row in rows for side in ("es", "en")])
    pretrained = save_tiny_hftk(tmp_path / "pretrained", tokenizer)
    # A learning rate of 1e-12: the saved weights are the starting weights to ~1e-12.
    still = ["training.learning_rate=1e-12", "training.max_steps=1"]
    run_hftk(*translate(f"random:{pretrained}", tmp_path / "twin", bible, *still), check=True)
    run_hftk(*translate(str(pretrained), tmp_path / "from_pretrained", bible, *still), check=True)

    source, twin, tuned = weights(pretrained), weights(tmp_path / "twin"), weights(tmp_path / "from_pretrained")
    name = next(k for k in source if "embed" in k and source[k].ndim == 2)
    assert torch.allclose(tuned[name], source[name], atol=1e-6)  # the control: fine-tuning at 1e-12 keeps the weights
    assert not torch.allclose(twin[name], source[name], atol=1e-3)  # the twin's are drawn afresh
    assert twin[name].shape == source[name].shape
    assert same_tokenizer(tmp_path / "twin", pretrained)
    ignore = {"architectures", "transformers_version", "dtype", "torch_dtype", "auto_map"}
    expected = {k: v for k, v in json.loads((pretrained / "config.json").read_text()).items() if k not in ignore}
    got = {k: v for k, v in json.loads((tmp_path / "twin" / "config.json").read_text()).items() if k not in ignore}
    assert got == expected


@pytest.mark.parametrize(
    ("model", "sets", "needles"),
    [
        ("new", ["lora.r=8"], ["LoRA (lora.r=8)", "drop lora.r"]),
        ("random:runs/x", ["lora.r=4"], ["LoRA (lora.r=4)", "random-init twin"]),
        ("new", ["model.reinit_top_layers=1"], ["model.reinit_top_layers", "fresh model"]),
        ("random:", [], ["random:FOLDER needs a folder"]),
        ("new:hftk_t5", [], ["model.new.type", "hftk_seq2seq"]),
        ("new", ["model.new.config.hiden_size=8"], ["model.new.config.hiden_size", "did you mean model.new.config.hidden_size"]),
        ("new", ["model.new=null"], ["--model new", "has none", "model.new.type"]),
        ("new", ["model.config.hidden_sise=8"], ["model.config.hidden_sise", "not a field of HftkSeq2SeqConfig"]),
        ("random:/no/such/folder", [], ["/no/such/folder"]),
    ],
    ids=["new+lora", "twin+lora", "new+reinit", "twin-without-folder", "unknown-type", "misspelt-size", "no-new-section",
         "misspelt-override", "twin-of-nothing"],
)
def test_models_without_pretrained_weights_refuse_what_cannot_apply_in_one_line(tmp_path, bible, model, sets, needles):
    result = run_hftk(*translate(model, tmp_path / "out", bible, *sets))
    assert_one_line_error(result, *needles)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_evaluate_needs_trained_weights(tmp_path, bible):
    result = run_hftk("evaluate", "translation", "--model", "new", "-o", str(tmp_path / "ev"),
                      *sum((["--set", s] for s in [*ES_EN, f"data.validation_file={bible['validation']}"]), []))
    assert_one_line_error(result, "--model new has no trained weights", "hftk finetune translation")


def test_pretraining_on_translation_rows_does_not_limit_the_models_positions(tmp_path, bible):
    """The issue's user: denoising on the pairs file itself with 32-token blocks, then translation
    with 48 source tokens and the recipe's 128 new tokens on a model of 256 positions."""
    pretrained = tmp_path / "pretrained"
    sets = [
        f"data.train_files=[{bible['train']}]", "data.max_seq_length=32", "training.max_steps=2",
        "training.per_device_train_batch_size=4", "training.eval_steps=1000", "training.save_steps=null",
        "training.report_to=[]", "training.num_threads=1", "tokenizer.vocab_size=600",
        "model.config.hidden_size=32", "model.config.intermediate_size=64", "model.config.num_hidden_layers=1",
        "model.config.num_attention_heads=2", "model.config.max_position_embeddings=256",
    ]
    run_hftk("pretrain", "pretrain-seq2seq", "-o", str(pretrained), *sum((["--set", s] for s in sets), []), check=True)
    assert json.loads((pretrained / "tokenizer_config.json").read_text())["model_max_length"] == 256
    vocab = json.loads((pretrained / "tokenizer.json").read_text())["model"]["vocab"]
    assert {"Ġthe", "Ġque"} <= set(vocab)  # both sides of the pairs were read as text

    out = tmp_path / "mt"
    run_hftk(*translate(str(pretrained), out, bible, "generation.max_new_tokens=128"), check=True)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_steps"] == 2 and 0 <= metrics["eval_bleu"] <= 100
    assert "max_seq_length: 48" in (out / "recipe.yaml").read_text()


def test_a_fresh_decoder_fine_tunes_on_prompts_with_label_smoothing_and_chrf(tmp_path, bible):
    rows = [json.loads(line)["translation"] for line in Path(bible["train"]).read_text().splitlines()]
    data = {split: write_rows(tmp_path / f"{split}.jsonl", [{"document": r["es"], "summary": r["en"]} for r in part])
            for split, part in (("train", rows), ("validation", rows[:4]))}
    sets = [*QUICK, *TINY_NEW, "training.label_smoothing_factor=0.1",
            f"data.train_file={data['train']}", f"data.validation_file={data['validation']}", "data.prompt_template={document}\nEnglish:"]
    out = tmp_path / "gpt"
    run_hftk("finetune", "generation", "--model", "new", "-o", str(out), *sum((["--set", s] for s in sets), []), check=True)
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["eval_chrf"] <= 100 and metrics["train_steps"] == 2
    assert metrics["sacrebleu_chrf_signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:")
    assert json.loads((out / "config.json").read_text())["model_type"] == "hftk_gpt"
    assert "label_smoothing_factor: 0.1" in (out / "recipe.yaml").read_text()
