"""`hftk run` with an encoder–decoder: denoising pretraining -> translation and summarization stages -> random twin -> report.

Tiny hftk_seq2seq (hidden 32, 1+1 layers), a few steps per stage, slices of the shared Bible and BBC data.
The report's numbers are checked against the stage folders' metrics.json (and chrF against SacreBLEU
run here on the written predictions); a task that does not fit the pretrained model fails on load.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest
import sacrebleu
import torch
import yaml
from safetensors.torch import load_file

from tests.commands.test_pipeline import DATA, SHARED, metrics, run_hftk, write_yaml

FINETUNE_TRAINING = {
    "max_steps": 4,
    "num_train_epochs": None,
    "eval_steps": 2,
    "logging_steps": 1,
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 8,
    "num_threads": 1,
    "report_to": [],
}
GENERATION = {"max_new_tokens": 8, "num_beams": 2}
STAGES = ["pretrain", "mt", "news", "baseline-mt", "baseline-news"]


def slice_rows(source: Path, target: Path, n: int) -> str:
    with open(source, encoding="utf-8") as handle:
        target.write_text("".join(line for _, line in zip(range(n), handle)), encoding="utf-8")
    return str(target)


def tiny_pipeline(tmp: Path) -> dict:
    corpus = tmp / "austen.txt"
    corpus.write_text("\n".join((DATA / "pretrain" / "austen.txt").read_text().splitlines()[:300]) + "\n")
    bible, bbc = DATA / "translation" / "bible_en_es", DATA / "generation" / "bbc_headlines"
    return {
        "output_dir": str(tmp / "out"),
        "pretrain": {
            "recipe": "pretrain-seq2seq",
            "model": {"config": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}},
            "tokenizer": {"vocab_size": 400},
            "data": {"train_files": [str(corpus)], "validation_split_percentage": 10, "max_seq_length": 64},
            "training": {
                "max_steps": 6, "eval_steps": 3, "save_steps": 3, "logging_steps": 1, "max_eval_batches": 2,
                "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8, "num_threads": 1, "report_to": [],
            },
        },
        "finetune": [
            {
                "name": "mt",
                "task": "translation",  # recipe finetune-translation: BLEU (main) and chrF
                "data": {
                    "train_file": slice_rows(bible / "train.jsonl", tmp / "bible_train.jsonl", 32),
                    "validation_file": slice_rows(bible / "validation.jsonl", tmp / "bible_validation.jsonl", 8),
                    "source_lang": "es",
                    "target_lang": "en",
                    "max_seq_length": 48,
                },
                "generation": dict(GENERATION),
                "training": dict(FINETUNE_TRAINING),
                "learning_curve": {"sizes": ["all"], "seeds": 2},  # two seeds per init: the report's seed-spread noise
            },
            {
                "name": "news",
                "task": "summarization",  # bbc_headlines has the recipe's default columns, document -> summary
                "data": {
                    "train_file": slice_rows(bbc / "train.jsonl", tmp / "bbc_train.jsonl", 32),
                    "validation_file": slice_rows(bbc / "test.jsonl", tmp / "bbc_test.jsonl", 8),
                    "max_seq_length": 64,
                    "max_target_length": 16,
                },
                "generation": dict(GENERATION),
                "training": dict(FINETUNE_TRAINING),
            },
        ],
        "baseline": {"seed": 3},
        "quantize": ["mt"],  # an int8 copy in mt-int8, scored with the stage's generation settings
    }


@pytest.fixture(scope="module")
def seq2seq_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline_seq2seq")
    path = write_yaml(tmp / "pipeline.yaml", tiny_pipeline(tmp))
    result = run_hftk("run", str(path), "--set", "finetune.*.training.max_steps=3")
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "out", result


def test_every_stage_runs_and_the_baseline_is_a_seeded_random_encoder_decoder(seq2seq_run):
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    import hftk  # noqa: F401  (registers hftk_seq2seq)

    out, result = seq2seq_run
    for stage in [*STAGES, "baseline-init", "mt/nall-seed43", "baseline-mt/nall-seed43", "mt-int8"]:
        assert f"running stage {stage} ->" in result.stdout, stage
    for stage in STAGES[1:]:
        assert metrics(out / stage)["train_steps"] == 3  # --set finetune.*.* reached every stage
    for stage in ("mt", "news"):
        recipe = yaml.safe_load((out / stage / "recipe.yaml").read_text())
        twin = yaml.safe_load((out / f"baseline-{stage}" / "recipe.yaml").read_text())
        assert recipe["model"]["name_or_path"] == str(out / "pretrain") and twin["model"]["name_or_path"] == str(out / "baseline-init")
        assert recipe["data"] == twin["data"] and recipe["training"] == twin["training"] and recipe["generation"] == twin["generation"]
    pretrained, init = out / "pretrain", out / "baseline-init"
    assert json.loads((init / "config.json").read_text()) == json.loads((pretrained / "config.json").read_text())
    assert json.loads((init / "generation_config.json").read_text()) == json.loads((pretrained / "generation_config.json").read_text())
    assert (init / "tokenizer.json").read_text() == (pretrained / "tokenizer.json").read_text()
    torch.manual_seed(3)
    reference = AutoModelForSeq2SeqLM.from_config(AutoConfig.from_pretrained(pretrained)).state_dict()
    saved, trained = load_file(init / "model.safetensors"), load_file(pretrained / "model.safetensors")
    assert saved.keys() == trained.keys()
    for name, tensor in saved.items():
        torch.testing.assert_close(tensor, reference[name], rtol=0, atol=0)
    assert not any(torch.equal(saved[name], trained[name]) for name in saved if name.endswith("weight") and saved[name].ndim == 2)
    assert type(AutoModelForSeq2SeqLM.from_pretrained(init)).__name__ == "HftkSeq2SeqForConditionalGeneration"


def _line(markdown: str, prefix: str) -> str:
    return next(line for line in markdown.splitlines() if line.startswith(prefix))


def _fmt(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def test_report_shows_bleu_chrf_rouge_and_losses_of_both_inits_with_the_noise_rule(seq2seq_run):
    out, _ = seq2seq_run
    report, markdown = json.loads((out / "report.json").read_text()), (out / "report.md").read_text()
    for stage in STAGES:
        assert report["stages"][stage]["metrics"] == metrics(out / stage)
    main = {row["stage"]: row for row in report["main"]}
    assert {stage: row["metric"] for stage, row in main.items()} == {"mt": "eval_bleu", "news": "eval_rougeL"}

    # mt: two runs per init (the stage and its second seed), judged against the larger seed spread
    runs = {side: [metrics(out / folder)["eval_bleu"] for folder in (stage, f"curves/{stage}/nall-seed43")]
            for side, stage in (("pretrained", "mt"), ("baseline", "baseline-mt"))}
    mt = main["mt"]
    assert (mt["pretrained_runs"], mt["baseline_runs"]) == (runs["pretrained"], runs["baseline"])
    assert mt["pretrained"] == pytest.approx(statistics.mean(runs["pretrained"]))
    assert mt["difference"] == pytest.approx(statistics.mean(runs["pretrained"]) - statistics.mean(runs["baseline"]))
    spread = max(statistics.stdev(runs["pretrained"]), statistics.stdev(runs["baseline"]))
    assert mt["noise"] == pytest.approx(spread) and mt["noise_source"] == "seed spread"  # BLEU has no binomial SE
    assert mt["verdict"] == ("within noise" if abs(mt["difference"]) <= spread else ("pretrained higher" if mt["difference"] > 0 else "baseline higher"))
    line = _line(markdown, "| mt | translation | eval_bleu |")
    assert f"| {_fmt(mt['pretrained'])} ± {_fmt(mt['pretrained_std'])} (2 seeds) |" in line and f"(seed spread) | {mt['verdict']} |" in line

    # news: one run per init, and ROUGE has no standard error: no verdict is claimed
    news = main["news"]
    pretrained, baseline = metrics(out / "news")["eval_rougeL"], metrics(out / "baseline-news")["eval_rougeL"]
    assert (news["pretrained"], news["baseline"], news["noise"], news["verdict"]) == (pretrained, baseline, None, "not assessed")
    assert _line(markdown, "| news | summarization | eval_rougeL |").endswith(f"| {_fmt(pretrained)} | {_fmt(baseline)} | {pretrained - baseline:+.4f} | – | not assessed |")

    # every result of both tasks, pretrained beside baseline, as in the stage folders; the reference loss too
    expected = {"mt": ["eval_bleu", "eval_chrf", "eval_loss"], "news": ["eval_rougeL", "eval_rouge1", "eval_rouge2", "eval_rougeLsum", "eval_bleu", "eval_chrf", "eval_loss"]}
    for stage, keys in expected.items():
        rows = [row for row in report["results"] if row["stage"] == stage]
        assert [row["metric"] for row in rows] == keys
        for row in rows:
            values = metrics(out / stage)[row["metric"]], metrics(out / f"baseline-{stage}")[row["metric"]]
            assert (row["pretrained"], row["baseline"]) == values
            assert f"| {stage} | {row['metric']} | {_fmt(values[0])} | {_fmt(values[1])} |" in markdown
    assert "cross-entropy of the reference texts" in markdown
    losses = [metrics(out / stage)["eval_loss"] for stage in ("mt", "baseline-mt")]
    assert losses[0] != losses[1] and all(0 < loss < 10 for loss in losses)  # two different models were scored

    # the scores themselves: SacreBLEU's chrF on the pretrained stage's written predictions
    records = [json.loads(line) for line in (out / "mt" / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 8 == metrics(out / "mt")["eval_samples"]
    chrf = sacrebleu.corpus_chrf([r["prediction"] for r in records], [[r["reference"] for r in records]]).score
    assert metrics(out / "mt")["eval_chrf"] == pytest.approx(chrf)
    for image in ("loss_curves.png", "results_chart.png", "results_mt.png", "results_news.png", "learning_curve_mt.png"):
        assert (out / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", image


def test_the_int8_translation_stage_is_scored_by_bleu_in_the_compression_table(seq2seq_run):
    out, _ = seq2seq_run
    int8 = metrics(out / "mt-int8")
    assert int8["source"] == "mt" and int8["eval_samples"] == 8
    records = [json.loads(line) for line in (out / "mt-int8" / "eval_evaluation" / "predictions.jsonl").read_text().splitlines()]
    predictions, references = [r["prediction"] for r in records], [[r["reference"] for r in records]]
    assert int8["eval_bleu"] == pytest.approx(sacrebleu.corpus_bleu(predictions, references).score)
    # int8 near fp32: a cross-entropy moves by at most the largest logit error (about 1-2 % of logits under 1);
    # the random twin's loss is 0.1 away
    assert abs(int8["eval_loss"] - metrics(out / "mt")["eval_loss"]) < 0.02
    rows = {row["model"]: row for row in json.loads((out / "report.json").read_text())["compression"]}
    assert rows.keys() == {"teacher fp32", "teacher int8"}
    assert (rows["teacher fp32"]["value"], rows["teacher int8"]["value"]) == (metrics(out / "mt")["eval_bleu"], int8["eval_bleu"])
    assert rows["teacher int8"]["metric"] == "eval_bleu" and rows["teacher int8"]["weights_bytes"] < rows["teacher fp32"]["weights_bytes"]


def test_a_second_run_skips_every_finished_seq2seq_stage_as_unchanged(seq2seq_run):
    """What the runs derive (learning rate, target length) must not read as a changed recipe."""
    out, _ = seq2seq_run
    again = run_hftk("run", str(out.parent / "pipeline.yaml"), "--set", "finetune.*.training.max_steps=3")
    assert again.returncode == 0, again.stderr[-3000:]
    for stage in [*STAGES, "baseline-init", "mt/nall-seed43", "baseline-mt/nall-seed43", "mt-int8"]:
        assert f"skipping finished stage {stage} (" in again.stdout, stage
    assert "running stage" not in again.stdout and "differs" not in again.stdout


def _set_task(index: int, task: str, **extra):
    def change(pipeline: dict) -> None:
        stage = pipeline["finetune"][index]
        stage.update(task=task, **extra)
        stage.pop("generation", None) if task not in ("translation", "summarization") else None
        stage.pop("learning_curve", None)
        for key in ("source_lang", "target_lang", "max_target_length"):
            stage["data"].pop(key, None)
    return change


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (  # translation on an encoder (objective mlm)
            lambda p: p["pretrain"].update(recipe="pretrain-default", tokenizer={"vocab_size": 400}),
            "finetune stage mt: task translation needs a model with an AutoModelForSeq2SeqLM head, and the pipeline pretrains hftk_bert (objective mlm)",
        ),
        (  # translation on a decoder (objective clm)
            lambda p: p["pretrain"].update(recipe="pretrain-gpt"),
            "finetune stage mt: task translation needs a model with an AutoModelForSeq2SeqLM head, and the pipeline pretrains hftk_gpt (objective clm)",
        ),
        (  # hftk_seq2seq has no classification, QA or token-classification head
            _set_task(1, "classification"),
            (
                "finetune stage news: task classification needs a model with an AutoModelForSequenceClassification head, "
                "and the pipeline pretrains hftk_seq2seq (objective denoise), which has none; tasks for hftk_seq2seq: "
                "translation, summarization; for classification pretrain hftk_bert with objective mlm or electra"
            ),
        ),
        (_set_task(1, "ner"), "task ner needs a model with an AutoModelForTokenClassification head"),
        (lambda p: p.update(distill=[{"teacher": "mt"}]), "distill stage mt-student: teacher stage mt is a translation task"),
        (  # the recipe's default (128 new tokens) cannot be generated by a model of 64 positions (its blocks' length does not count)
            lambda p: (p["finetune"][0].pop("generation"), p["pretrain"]["model"]["config"].update(max_position_embeddings=64)),
            "finetune stage mt: generation.max_new_tokens (128) must be smaller than the 64 positions of the pretrained model",
        ),
        (
            lambda p: (p["finetune"][1]["data"].update(max_seq_length=96), p["pretrain"]["model"]["config"].update(max_position_embeddings=64)),
            "finetune stage news: data.max_seq_length (96) exceeds the 64 tokens the pretrained model takes",
        ),
    ],
)
def test_a_task_that_does_not_fit_the_pretrained_model_fails_on_load(tmp_path, change, needle):
    from hftk.recipe.pipeline import load_pipeline
    from hftk.errors import HftkError

    data = tiny_pipeline(tmp_path)
    change(data)
    with pytest.raises(HftkError, match=re.escape(needle)) as error:
        load_pipeline(write_yaml(tmp_path / "bad.yaml", data))
    assert "\n" not in str(error.value)


def test_the_cli_refuses_translation_on_an_encoder_before_anything_runs(tmp_path):
    data = tiny_pipeline(tmp_path)
    data["pretrain"]["recipe"] = "pretrain-default"
    result = run_hftk("run", str(write_yaml(tmp_path / "bad.yaml", data)))
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: finetune stage mt: task translation needs"), result.stderr
    assert "pretrain hftk_seq2seq with objective denoise (recipe pretrain-seq2seq)" in lines[0]
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written


def test_shipped_seq2seq_pipeline_validates_and_points_at_the_shared_data(monkeypatch):
    from hftk.recipe.pipeline import load_pipeline

    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # its paths are relative to the repository root
    pipeline = load_pipeline("pipeline-seq2seq")
    assert pipeline.pretrain.objective == "denoise" and pipeline.pretrain.model.type == "hftk_seq2seq"
    assert pipeline.spec.baseline is not None
    assert {name: recipe.task for name, recipe in pipeline.finetune.items()} == {"bible_es_en": "translation", "bbc_headlines": "summarization"}
    mt, news = pipeline.finetune["bible_es_en"], pipeline.finetune["bbc_headlines"]
    assert (mt.data.source_lang, mt.data.target_lang) == ("es", "en")
    files = [*pipeline.pretrain.data.train_files]
    for recipe in (mt, news):
        files += [recipe.data.train_file, recipe.data.validation_file]
        assert recipe.data.max_seq_length <= pipeline.pretrain.data.max_seq_length
        assert recipe.generation.max_new_tokens < pipeline.pretrain.data.max_seq_length
    for path in files:
        assert Path(path).exists() and Path(path).resolve().is_relative_to(SHARED), path
    first = json.loads(Path(news.data.train_file).read_text().splitlines()[0])
    assert {news.data.source_column, news.data.target_column} <= set(first)
    assert {"es", "en"} <= set(json.loads(Path(mt.data.train_file).read_text().splitlines()[0])["translation"])
