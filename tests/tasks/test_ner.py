"""Token classification: tag sets, sub-word alignment, word-level metrics (wnut16, brown_pos)."""

from __future__ import annotations

import types

import datasets
import numpy as np
import pytest

from hftk.errors import HftkError
from hftk.tasks.ner import compute_ner_metrics, is_entity_scheme, prepare_ner

WNUT_TAGS = sorted(
    ["O"] + [f"{p}-{t}" for t in ["company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product", "sportsteam", "tvshow"] for p in "BI"]
)


def gold_logits(features: datasets.Dataset, num_labels: int, seed: int = 0) -> np.ndarray:
    """Noise everywhere, a clear winner (the gold tag) at labelled positions; padded to one length."""
    rng = np.random.default_rng(seed)
    length = max(len(ids) for ids in features["input_ids"])
    logits = rng.normal(size=(len(features), length, num_labels))
    for i, labels in enumerate(features["labels"]):
        for pos, label in enumerate(labels):
            if label >= 0:
                logits[i, pos, label] = 20.0
    return logits


def test_wnut16_alignment_and_gold_scores(bert_tokenizer, data_dir, slice_file, read_jsonl):
    src = data_dir / "ner" / "wnut16"
    train_path = slice_file(src / "train.jsonl", 300, "train.jsonl")
    task = prepare_ner(bert_tokenizer, train_file=train_path, validation_file=slice_file(src / "test.jsonl", 60, "test.jsonl"))
    assert task.kind == "token_classification" and task.main_metric == "f1"
    rows = read_jsonl(src / "train.jsonl", 300)
    seen = {t for row in rows for t in row["ner_tags"]}
    assert list(task.id2label.values()) == sorted(seen) and seen <= set(WNUT_TAGS) and len(seen) > 10
    assert set(task.train.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    label2id = task.label2id
    multi_piece = 0
    for row, feature in zip(rows, task.train):
        labelled = [label for label in feature["labels"] if label != -100]
        assert labelled == [label2id[t] for t in row["ner_tags"]]
        # first sub-token of each word carries the tag: re-tokenise word by word to find them.
        pieces = [len(bert_tokenizer(w, add_special_tokens=False)["input_ids"]) for w in row["tokens"]]
        firsts = np.cumsum([1] + pieces[:-1]).tolist()  # +1 for [CLS]
        assert [p for p, label in enumerate(feature["labels"]) if label != -100] == firsts
        multi_piece += sum(n > 1 for n in pieces)
    assert multi_piece > 50  # the slice really exercises sub-word splitting

    # Collator pads labels with -100.
    batch = task.collator([task.eval["validation"][i] for i in range(8)])
    lengths = [len(task.eval["validation"][i]["input_ids"]) for i in range(8)]
    assert batch["labels"].shape == (8, max(lengths))
    assert (batch["labels"][np.argmin(lengths), min(lengths):] == -100).all()

    result = task.compute_metrics("validation", gold_logits(task.eval["validation"], task.num_labels))
    assert result == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "accuracy": 1.0}


def test_one_wrong_entity_by_hand():
    references = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]]
    predictions = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG"]]
    # gold entities: PER, LOC, ORG; predicted: PER (right), ORG at the LOC (wrong), ORG (right)
    result = compute_ner_metrics(predictions, references)
    assert result == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "accuracy": 5 / 6})
    # Half an entity is no entity: I-PER missing -> PER span differs.
    result = compute_ner_metrics([["B-PER", "O", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-LOC"]])
    assert result == pytest.approx({"precision": 1 / 2, "recall": 1 / 2, "f1": 1 / 2, "accuracy": 3 / 4})


def _raw(train_rows, eval_rows, column="ner_tags", features=None):
    def ds(rows):
        return datasets.Dataset.from_dict({"tokens": [r[0] for r in rows], column: [r[1] for r in rows]}, features=features)

    return datasets.DatasetDict(train=ds(train_rows), validation=ds(eval_rows))


def test_pipeline_wrong_entity_and_truncation(bert_tokenizer):
    rows = [(["Alice", "visited", "Paris"], ["B-PER", "O", "B-LOC"]), (["Bob", "Smith"], ["B-PER", "I-PER"])]
    task = prepare_ner(bert_tokenizer, raw=_raw(rows, rows))
    logits = gold_logits(task.eval["validation"], task.num_labels)
    # Predict PER for "Paris": one of three gold entities wrong, one of three predictions wrong.
    paris = task.eval_features["validation"][0]["word_ids"].index(2)
    logits[0, paris] = 0.0
    logits[0, paris, task.label2id["B-PER"]] = 20.0
    assert task.compute_metrics("validation", logits) == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "accuracy": 4 / 5}
    )
    # max_seq_length 4 = [CLS] alice visited [SEP]: "Paris" is cut and counts as "O" (a miss).
    short = prepare_ner(bert_tokenizer, raw=_raw(rows, rows[:1]), max_seq_length=4)
    assert short.eval["validation"][0]["input_ids"] == bert_tokenizer(["Alice", "visited"], is_split_into_words=True)["input_ids"]
    result = short.compute_metrics("validation", gold_logits(short.eval["validation"], short.num_labels))
    assert result == pytest.approx({"precision": 1.0, "recall": 1 / 2, "f1": 2 / 3, "accuracy": 2 / 3})


def test_label_all_tokens_uses_i_tags_on_continuations(bert_tokenizer):
    rows = [(["Schwarzenegger", "won"], ["B-PER", "O"]), (["x"], ["I-PER"])]
    pieces = bert_tokenizer("Schwarzenegger", add_special_tokens=False)["input_ids"]
    assert len(pieces) > 1
    task = prepare_ner(bert_tokenizer, raw=_raw(rows, rows), label_all_tokens=True)
    b, i, o = task.label2id["B-PER"], task.label2id["I-PER"], task.label2id["O"]
    assert task.train[0]["labels"] == [-100, b] + [i] * (len(pieces) - 1) + [o, -100]
    # Evaluation stays first-sub-token only.
    assert task.eval["validation"][0]["labels"] == [-100, b] + [-100] * (len(pieces) - 1) + [o, -100]


def test_brown_pos_tags_column_is_plain_tagging(bert_tokenizer, data_dir, slice_file, read_jsonl):
    src = data_dir / "ner" / "brown_pos"
    task = prepare_ner(
        bert_tokenizer, train_file=slice_file(src / "train.jsonl", 200, "train.jsonl"),
        validation_file=slice_file(src / "test.jsonl", 30, "test.jsonl"), tags_column="tags",
    )
    tags = list(task.id2label.values())
    # The data has 13 coarse tags (the 12 universal ones plus PROPN); a 200-sentence slice has most.
    assert tags == sorted({t for row in read_jsonl(src / "train.jsonl", 200) for t in row["tags"]})
    assert {"NOUN", "VERB", "DET", "ADP", "PUNCT", "PROPN"} <= set(tags)
    assert not is_entity_scheme(tags) and task.main_metric == "accuracy"
    logits = gold_logits(task.eval["validation"], task.num_labels)
    assert task.compute_metrics("validation", logits) == {"accuracy": 1.0}
    # Flip the first word of every sentence to another tag: accuracy drops by exactly those words.
    n_words = sum(len(t) for t in task.eval_examples["validation"]["tags"])
    for i, positions in enumerate(task.eval_features["validation"]["word_ids"]):
        pos = positions.index(0)
        gold = logits[i, pos].argmax()
        logits[i, pos, (gold + 1) % task.num_labels] = 50.0
    n = len(task.eval["validation"])
    assert task.compute_metrics("validation", logits)["accuracy"] == pytest.approx((n_words - n) / n_words)


def test_int_tags_with_hub_classlabel_names(bert_tokenizer):
    names = ["O", "B-PER", "I-PER"]
    features = datasets.Features(tokens=datasets.List(datasets.Value("string")), ner_tags=datasets.List(datasets.ClassLabel(names=names)))
    rows = [(["Ann", "Lee", "ran"], [1, 2, 0])]
    task = prepare_ner(bert_tokenizer, raw=_raw(rows, rows, features=features))
    assert task.id2label == {0: "O", 1: "B-PER", 2: "I-PER"} and task.main_metric == "f1"
    assert task.compute_metrics("validation", gold_logits(task.eval["validation"], 3))["f1"] == 1.0


def test_errors(bert_tokenizer):
    train = [(["a", "b"], ["O", "B-X"])]
    with pytest.raises(HftkError, match="tag 'B-Y' that is not in the training tags"):
        prepare_ner(bert_tokenizer, raw=_raw(train, [(["c"], ["B-Y"])]))
    with pytest.raises(HftkError, match="example 0 has 2 words but 1 tags"):
        prepare_ner(bert_tokenizer, raw=_raw([(["a", "b"], ["O"])], train))
    with pytest.raises(HftkError, match="no column.*'tags'"):
        prepare_ner(bert_tokenizer, raw=_raw(train, train), tags_column="tags")
    with pytest.raises(HftkError, match="fast tokenizer"):
        prepare_ner(types.SimpleNamespace(is_fast=False), raw=_raw(train, train))


def test_a_random_label_budget_subset_keeps_the_training_sets_tag_set(bert_tokenizer, data_dir, slice_file, read_jsonl):
    src = data_dir / "ner" / "wnut16"
    train, test = slice_file(src / "train.jsonl", 300, "train.jsonl"), slice_file(src / "test.jsonl", 8, "test.jsonl")
    every_tag = sorted({t for row in read_jsonl(src / "train.jsonl", 300) for t in row["ner_tags"]})
    for seed in (0, 1):
        task = prepare_ner(bert_tokenizer, train_file=train, validation_file=test, max_train_samples=10, train_sample_seed=seed)
        assert len(task.train) == 10
        assert list(task.id2label.values()) == every_tag  # 10 tweets alone hold only a few of these tags
    subset_tags = {t for row in read_jsonl(src / "train.jsonl", 10) for t in row["ner_tags"]}
    assert len(subset_tags) < len(every_tag)
