"""Generic classification on real data (fine_foods, bbc_news): labels, tokenisation, collation, metrics."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from hftk.errors import HftkError
from hftk.tasks.classification import compute_classification_metrics, infer_label_space, prepare_classification


def test_fine_foods_string_labels_sorted_to_ids(bert_tokenizer, data_dir, slice_file, read_jsonl):
    src = data_dir / "classification" / "fine_foods"
    task = prepare_classification(
        bert_tokenizer, train_file=slice_file(src / "train.jsonl", 40, "train.jsonl"),
        validation_file=slice_file(src / "test.jsonl", 12, "test.jsonl"), max_seq_length=32,
    )
    assert task.kind == "sequence_classification"
    assert task.num_labels == 2 and task.id2label == {0: "great", 1: "other"}
    assert task.label2id == {"great": 0, "other": 1}
    assert task.problem_type == "single_label_classification"
    assert set(task.train.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    raw = read_jsonl(src / "train.jsonl", 40)
    assert task.train["labels"] == [0 if r["label"] == "great" else 1 for r in raw]
    # Truncated to 32 tokens, and identical to tokenising the text directly.
    first = bert_tokenizer(raw[0]["text"], truncation=True, max_length=32)["input_ids"]
    assert task.train[0]["input_ids"] == first
    assert max(len(ids) for ids in task.train["input_ids"]) == 32
    # Dynamic padding: the batch is padded to its longest member only.
    batch = task.collator([task.eval["validation"][i] for i in range(4)])
    lengths = [len(task.eval["validation"][i]["input_ids"]) for i in range(4)]
    assert batch["input_ids"].shape == (4, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert batch["labels"].tolist() == task.eval["validation"]["labels"][:4]


def test_bbc_news_five_classes_and_metrics(bert_tokenizer, data_dir, slice_file):
    src = data_dir / "classification" / "bbc_news"
    task = prepare_classification(
        bert_tokenizer, train_file=slice_file(src / "train.jsonl", 60, "train.jsonl"),
        validation_file=slice_file(src / "test.jsonl", 10, "test.jsonl"), max_seq_length=64,
    )
    assert task.id2label == dict(enumerate(["business", "entertainment", "politics", "sports", "tech"]))
    refs = np.array(task.eval["validation"]["labels"])
    logits = np.eye(5)[refs]
    assert task.compute_metrics("validation", logits) == {"accuracy": 1.0, "f1": 1.0}
    # Hand computation: predict class 0 everywhere.
    wrong = np.zeros((len(refs), 5))
    wrong[:, 0] = 1.0
    result = task.compute_metrics("validation", wrong)
    acc = float(np.mean(refs == 0))
    assert result["accuracy"] == pytest.approx(acc)
    # macro-F1 over the classes present in refs/preds: only class 0 can score.
    p0 = acc
    f1_0 = 2 * p0 / (p0 + 1) if p0 else 0.0
    n_classes = len(set(refs.tolist()) | {0})
    assert result["f1"] == pytest.approx(f1_0 / n_classes)


def _raw(train_labels, eval_labels, features=None):
    train = datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(len(train_labels))], "label": train_labels}, features=features)
    ev = datasets.Dataset.from_dict({"text": [f"e{i}" for i in range(len(eval_labels))], "label": eval_labels}, features=features)
    return datasets.DatasetDict(train=train, validation=ev)


def test_unseen_string_label_at_eval_names_it(bert_tokenizer):
    with pytest.raises(HftkError, match="'neutral'"):
        prepare_classification(bert_tokenizer, raw=_raw(["pos", "neg"], ["pos", "neutral"]))


def test_int_labels_kept_and_out_of_range_rejected(bert_tokenizer):
    task = prepare_classification(bert_tokenizer, raw=_raw([2, 0, 1, 2], [1, 0]))
    assert task.num_labels == 3 and task.train["labels"] == [2, 0, 1, 2]
    with pytest.raises(HftkError, match="label 3 outside the label ids 0..2"):
        prepare_classification(bert_tokenizer, raw=_raw([2, 0, 1], [3]))
    with pytest.raises(HftkError, match="negative"):
        prepare_classification(bert_tokenizer, raw=_raw([0, -1], [0]))


def test_hub_classlabel_names_are_used(bert_tokenizer):
    features = datasets.Features(text=datasets.Value("string"), label=datasets.ClassLabel(names=["neg", "pos"]))
    task = prepare_classification(bert_tokenizer, raw=_raw([1, 1], [0], features))
    assert task.id2label == {0: "neg", 1: "pos"} and task.train["labels"] == [1, 1]


def test_text_pair_and_missing_columns(bert_tokenizer):
    raw = datasets.DatasetDict(train=datasets.Dataset.from_dict({"a": ["one two"], "b": ["three"], "y": ["x"]}))
    task = prepare_classification(bert_tokenizer, raw=raw, text_column="a", text_pair_column="b", label_column="y")
    assert task.train[0]["input_ids"] == bert_tokenizer("one two", "three")["input_ids"]
    assert task.train[0]["token_type_ids"] == [0, 0, 0, 0, 1, 1]
    with pytest.raises(HftkError, match="no column.*'sentence'.*it has \\['a', 'b', 'y'\\]"):
        prepare_classification(bert_tokenizer, raw=raw, text_column="sentence", label_column="y")


def test_multi_label_and_regression(bert_tokenizer):
    multi = prepare_classification(bert_tokenizer, raw=_raw([["b", "a"], ["c"], []], [["a"]]))
    assert multi.problem_type == "multi_label_classification" and multi.id2label == {0: "a", 1: "b", 2: "c"}
    assert multi.train["labels"] == [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    batch = multi.collator([multi.train[i] for i in range(3)])
    assert batch["labels"].dtype.is_floating_point and batch["labels"].shape == (3, 3)
    # micro-F1 on flattened decisions: 2 TP, 2 FP, 1 FN -> F1 = 2*2/(2*2+2+1) = 4/7
    logits = np.array([[1.0, -1.0, 1.0], [-1.0, -1.0, 1.0], [-1.0, 1.0, -1.0]])
    refs = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]])
    result = compute_classification_metrics(logits, refs, "multi_label_classification")
    assert result["f1"] == pytest.approx(4 / 7) and result["subset_accuracy"] == pytest.approx(1 / 3)

    reg = prepare_classification(bert_tokenizer, raw=_raw([0.5, 3.0], [1.0, 2.0, 4.0]))
    assert reg.problem_type == "regression" and reg.num_labels == 1 and reg.id2label is None
    out = reg.compute_metrics("validation", np.array([[1.0], [2.5], [4.0]]))
    assert out["pearson"] == pytest.approx(np.corrcoef([1, 2.5, 4], [1, 2, 4])[0, 1])
    assert out["mse"] == pytest.approx(0.25 / 3)


def test_label_space_for_local_csv(tmp_path, bert_tokenizer):
    (tmp_path / "train.csv").write_text("text,label\nhello,spam\nbye,ham\n")
    (tmp_path / "dev.csv").write_text("text,label\nhi,ham\n")
    task = prepare_classification(bert_tokenizer, train_file=str(tmp_path / "train.csv"), validation_file=str(tmp_path / "dev.csv"))
    assert task.id2label == {0: "ham", 1: "spam"} and task.eval["validation"]["labels"] == [0]
    assert infer_label_space(datasets.Dataset.from_dict({"label": ["z", "a"]}), "label").names == ("a", "z")
    with pytest.raises(HftkError, match="does not exist"):
        prepare_classification(bert_tokenizer, train_file=str(tmp_path / "nope.csv"))
    (tmp_path / "train.txt").write_text("x")
    with pytest.raises(HftkError, match="unsupported extension"):
        prepare_classification(bert_tokenizer, train_file=str(tmp_path / "train.txt"))


def test_train_sample_seed_draws_a_random_labelled_subset(bert_tokenizer, data_dir, slice_file, read_jsonl):
    """Learning-curve subsets: n examples drawn per seed from the whole file, reproducibly; more than there are is an error."""
    src = data_dir / "classification" / "fine_foods"
    train, test = slice_file(src / "train.jsonl", 60, "train.jsonl"), slice_file(src / "test.jsonl", 4, "test.jsonl")
    ids = {tuple(bert_tokenizer(r["text"], truncation=True, max_length=32)["input_ids"]) for r in read_jsonl(src / "train.jsonl", 60)}

    def subset(seed, n=20):
        task = prepare_classification(
            bert_tokenizer, train_file=train, validation_file=test, max_seq_length=32, max_train_samples=n, train_sample_seed=seed
        )
        return [tuple(row) for row in task.train["input_ids"]]

    first, again, other = subset(1), subset(1), subset(2)
    assert len(first) == 20 and set(first) <= ids and first == again
    assert first != other and set(first) != set(other)
    first_rows = [tuple(bert_tokenizer(r["text"], truncation=True, max_length=32)["input_ids"]) for r in read_jsonl(src / "train.jsonl", 20)]
    assert set(first) != set(first_rows)  # not the first 20 rows
    assert len(subset(1, 60)) == 60
    with pytest.raises(HftkError, match=r"max_train_samples \(61\) with data.train_sample_seed is larger than the training set \(60 examples\)"):
        subset(1, 61)
