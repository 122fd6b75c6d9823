"""`hftk finetune translation|summarization` and `hftk evaluate` end to end, one subprocess per run.

Tiny encoder–decoders (hidden 32, 1+1 layers): hftk_seq2seq by default, BART with LoRA for
summarization (any AutoModelForSeq2SeqLM fits). The scores in metrics.json are checked against
SacreBLEU run here on the written predictions.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sacrebleu

from tests.commands.test_finetune import DATA, FAST, assert_finished_folder, finetune_args, read_rows, run_hftk, write_rows
from tests.tasks.tiny_seq2seq import bible_rows, save_tiny_bart, save_tiny_hftk, seq2seq_tokenizer

SEQ2SEQ_FAST = [*FAST, "data.max_seq_length=48", "generation.max_new_tokens=8", "generation.num_beams=2"]


@pytest.fixture(scope="module")
def bible(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bible")
    train = bible_rows("train", 64, shared=DATA.parent)
    return {
        "train": write_rows(root / "train.jsonl", train),
        "validation": write_rows(root / "validation.jsonl", bible_rows("validation", 12, shared=DATA.parent)),
        "texts": [r["translation"][k] for r in train for k in ("en", "es")],
    }


@pytest.fixture(scope="module")
def headlines(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("headlines")
    bbc = DATA / "generation" / "bbc_headlines"
    cut = lambda rows: [{"story": r["document"][:300], "headline": r["summary"]} for r in rows]  # noqa: E731
    train = cut(read_rows(bbc / "train.jsonl", 32))
    return {
        "train": write_rows(root / "train.jsonl", train),
        "validation": write_rows(root / "validation.jsonl", cut(read_rows(bbc / "test.jsonl", 8))),
        "texts": [r[k] for r in train for k in ("story", "headline")],
    }


def test_translation_hftk_seq2seq_and_evaluate(bible, tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    model = save_tiny_hftk(tmp_path / "model", seq2seq_tokenizer(bible["texts"]))
    out = tmp_path / "mt"
    files = [f"data.train_file={bible['train']}", f"data.validation_file={bible['validation']}"]
    run_hftk(*finetune_args("translation", model, out, *SEQ2SEQ_FAST, *files, "data.source_lang=es", "data.target_lang=en"), check=True)
    metrics = assert_finished_folder(out, {"eval_bleu": (0, 100), "eval_chrf": (0, 100), "eval_loss": (0, 20)}, 12)
    assert metrics["sacrebleu_bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert metrics["sacrebleu_chrf_signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:")
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["reference"] for r in records] == [r["translation"]["en"] for r in bible_rows("validation", 12, shared=DATA.parent)]
    predictions, references = [r["prediction"] for r in records], [[r["reference"] for r in records]]
    assert metrics["eval_chrf"] == pytest.approx(sacrebleu.corpus_chrf(predictions, references).score)
    assert metrics["eval_bleu"] == pytest.approx(sacrebleu.corpus_bleu(predictions, references).score)
    recipe = (out / "recipe.yaml").read_text()
    assert "label_smoothing_factor: 0.1" in recipe and "length_penalty: 0.6" in recipe  # the shipped recipe's defaults
    assert AutoModelForSeq2SeqLM.from_pretrained(out).config.model_type == "hftk_seq2seq"
    ev = tmp_path / "ev"
    sets = [*SEQ2SEQ_FAST, *files, "data.source_lang=es", "data.target_lang=en"]
    run_hftk("evaluate", "translation", "--model", str(out), "-o", str(ev), *sum((["--set", s] for s in sets), []), check=True)
    again = json.loads((ev / "metrics.json").read_text())
    assert {k: again[k] for k in ("eval_bleu", "eval_chrf", "sacrebleu_bleu_signature")} == {
        k: metrics[k] for k in ("eval_bleu", "eval_chrf", "sacrebleu_bleu_signature")
    }


def test_summarization_bart_with_lora(headlines, tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    model = save_tiny_bart(tmp_path / "model", seq2seq_tokenizer(headlines["texts"]))
    out = tmp_path / "sum"
    sets = [
        *SEQ2SEQ_FAST, f"data.train_file={headlines['train']}", f"data.validation_file={headlines['validation']}",
        "data.source_column=story", "data.target_column=headline", "lora.r=4",
    ]
    run_hftk(*finetune_args("summarization", model, out, *sets), check=True)
    metrics = assert_finished_folder(out, {"eval_rouge1": (0, 100), "eval_rouge2": (0, 100), "eval_rougeL": (0, 100)}, 8)
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["task_type"] == "SEQ_2_SEQ_LM"
    assert AutoModelForSeq2SeqLM.from_pretrained(out).config.model_type == "bart"  # merged
    assert "sacrebleu_bleu_signature" not in metrics
