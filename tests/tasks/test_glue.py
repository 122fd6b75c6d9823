"""GLUE task table, local-file loading in the Hub layout, metrics and errors."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest

from hftk.errors import HftkError
from hftk.tasks.glue import GLUE_TASKS, compute_glue_metrics, get_glue_task, prepare_glue


def test_table_matches_the_hub_configs():
    assert list(GLUE_TASKS) == ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"]
    pairs = {n: (t.sentence1_key, t.sentence2_key) for n, t in GLUE_TASKS.items()}
    assert pairs["cola"] == ("sentence", None) and pairs["sst2"] == ("sentence", None)
    assert pairs["qqp"] == ("question1", "question2") and pairs["mnli"] == ("premise", "hypothesis")
    assert pairs["qnli"] == ("question", "sentence") and pairs["rte"] == ("sentence1", "sentence2")
    assert {n: t.num_labels for n, t in GLUE_TASKS.items()} == {
        "cola": 2, "sst2": 2, "mrpc": 2, "qqp": 2, "stsb": 1, "mnli": 3, "qnli": 2, "rte": 2, "wnli": 2,
    }
    assert GLUE_TASKS["stsb"].is_regression and GLUE_TASKS["stsb"].label_space.problem_type == "regression"
    assert GLUE_TASKS["mnli"].validation_splits == ("validation_matched", "validation_mismatched")
    assert GLUE_TASKS["mnli"].label_names == ("entailment", "neutral", "contradiction")
    assert {n: t.main_metric for n, t in GLUE_TASKS.items() if t.main_metric != "accuracy"} == {
        "cola": "matthews_correlation", "mrpc": "combined_score", "qqp": "combined_score", "stsb": "combined_score",
    }
    assert get_glue_task("SST-2").name == "sst2"


def test_unknown_task_names_the_nine():
    with pytest.raises(HftkError, match="unknown GLUE task 'squad'; choose one of cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli"):
        get_glue_task("squad")


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_mrpc_from_local_files_with_label_ids_or_names(tmp_path, bert_tokenizer):
    rows = [
        {"sentence1": "The cat sat.", "sentence2": "A cat was sitting.", "label": 1, "idx": 0},
        {"sentence1": "Stocks fell.", "sentence2": "It rained in Paris.", "label": 0, "idx": 1},
    ]
    named = [dict(r, label=["not_equivalent", "equivalent"][r["label"]]) for r in rows]
    task = prepare_glue(
        "mrpc", bert_tokenizer, train_file=_write(tmp_path / "train.jsonl", rows),
        validation_file=_write(tmp_path / "dev.jsonl", named), max_seq_length=16,
    )
    assert task.id2label == {0: "not_equivalent", 1: "equivalent"} and task.main_metric == "combined_score"
    assert task.train["labels"] == [1, 0] and task.eval["validation"]["labels"] == [1, 0]
    assert task.train[0]["input_ids"] == bert_tokenizer("The cat sat.", "A cat was sitting.")["input_ids"]
    # preds [1, 1] vs refs [1, 0]: accuracy 0.5, F1 (positive = 1) = 2/3; combined = their mean.
    result = task.compute_metrics("validation", np.array([[0.0, 1.0], [0.0, 1.0]]))
    assert result == pytest.approx({"accuracy": 0.5, "f1": 2 / 3, "combined_score": (0.5 + 2 / 3) / 2})


def test_mnli_has_two_validation_splits(bert_tokenizer):
    def ds(labels):
        return datasets.Dataset.from_dict({"premise": ["p"] * len(labels), "hypothesis": ["h"] * len(labels), "label": labels})

    raw = datasets.DatasetDict(train=ds([0, 1, 2]), validation_matched=ds([2]), validation_mismatched=ds([0, 1]))
    task = prepare_glue("mnli", bert_tokenizer, raw=raw)
    assert list(task.eval) == ["validation_matched", "validation_mismatched"]
    assert task.compute_metrics("validation_mismatched", np.array([[1.0, 0, 0], [1.0, 0, 0]])) == {"accuracy": 0.5}


def test_stsb_regression_and_cola_mcc(bert_tokenizer):
    raw = datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [0.0, 5.0]}),
        validation=datasets.Dataset.from_dict({"sentence1": ["a"] * 3, "sentence2": ["c"] * 3, "label": [1.0, 2.0, 4.0]}),
    )
    task = prepare_glue("stsb", bert_tokenizer, raw=raw)
    assert task.num_labels == 1 and task.problem_type == "regression" and task.eval["validation"]["labels"] == [1.0, 2.0, 4.0]
    result = task.compute_metrics("validation", np.array([[1.0], [3.0], [4.0]]))
    pearson = np.corrcoef([1, 3, 4], [1, 2, 4])[0, 1]
    assert result["pearson"] == pytest.approx(pearson) and result["spearmanr"] == pytest.approx(1.0)
    assert result["combined_score"] == pytest.approx((pearson + 1.0) / 2)
    # cola: preds [1, 1, 0, 0] vs refs [1, 0, 0, 0] -> TP1 FP1 TN2 FN0: MCC = (2-0)/sqrt(2*1*3*2) = 1/sqrt(3)
    mcc = compute_glue_metrics("cola", np.array([[0, 1], [0, 1], [1, 0], [1, 0]]), [1, 0, 0, 0])
    assert mcc == pytest.approx({"matthews_correlation": 1 / np.sqrt(3)})


def test_missing_columns_and_bad_labels(tmp_path, bert_tokenizer):
    bad = _write(tmp_path / "train.jsonl", [{"text": "x", "label": 0}])
    with pytest.raises(HftkError, match="no column.*'sentence'"):
        prepare_glue("sst2", bert_tokenizer, train_file=bad)
    raw = datasets.DatasetDict(train=datasets.Dataset.from_dict({"sentence": ["x"], "label": ["positive-ish"]}))
    with pytest.raises(HftkError, match="'positive-ish'"):
        prepare_glue("sst2", bert_tokenizer, raw=raw)
    test_split = datasets.DatasetDict(validation=datasets.Dataset.from_dict({"sentence": ["x"], "label": [-1]}))
    with pytest.raises(HftkError, match="label -1 outside"):
        prepare_glue("sst2", bert_tokenizer, raw=test_split)
    with pytest.raises(HftkError, match="validation splits"):
        prepare_glue("mnli", bert_tokenizer, validation_file={"validation": bad})


def test_hub_unreachable_is_a_clear_error(bert_tokenizer, monkeypatch):
    # No Hub here: force offline mode even if datasets was imported before the env var was set.
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HftkError, match="could not load data set 'nyu-mll/glue' \\(config 'rte'\\).*--set data.train_file="):
        prepare_glue("rte", bert_tokenizer)


def test_task_registry_and_model_class(bert_tokenizer):
    from hftk.tasks import TASKS, get_task

    assert list(TASKS) == ["glue", "classification", "qa", "ner", "generation", "translation", "summarization"]
    assert get_task("glue") is prepare_glue
    with pytest.raises(HftkError, match="unknown task 'summarize'; choose one of glue, classification, qa, ner, generation, translation, summarization"):
        get_task("summarize")
    raw = datasets.DatasetDict(train=datasets.Dataset.from_dict({"sentence": ["x"], "label": [1]}))
    assert prepare_glue("sst2", bert_tokenizer, raw=raw).auto_model_class == "AutoModelForSequenceClassification"
