"""Token classification (NER with BIO tags, or plain tagging such as POS) on pre-split words.

Like HF's `run_ner.py`: the tag set is read from the training data (sorted), words are
tokenised with `is_split_into_words=True`, and each word's tag goes on its first sub-token
(the others get -100, or the word's tag with `label_all_tokens`, B-X becoming I-X). Metrics
are word-level: the prediction at each word's first sub-token against the word's gold tag,
entity-level precision/recall/F1 by seqeval for BIO-style tag sets, token accuracy always.
Words cut off by `max_seq_length` count as predicted "O", so truncation cannot flatter scores.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np
from transformers import DataCollatorForTokenClassification, PreTrainedTokenizerBase

from hftk.errors import HftkError
from hftk.tasks.common import (
    TaskData,
    column,
    effective_max_length,
    keep_columns,
    load_splits,
    model_columns,
    require_column_types,
    require_columns,
    require_fast_tokenizer,
    require_split,
    take,
)

IGNORE = -100
_ENTITY_TAG = re.compile(r"^(O|[BIESLU]-.+)$")


def infer_tag_names(train: datasets.Dataset, tags_column: str, label_names: Sequence[str] | None = None) -> list[str]:
    """Tag names by id: Hub ClassLabel names, `label_names`, sorted string tags, or "0".."n-1"."""
    inner = getattr(train.features[tags_column], "feature", None)
    if isinstance(inner, datasets.ClassLabel):
        return list(inner.names)
    if label_names is not None:
        return list(label_names)
    values = [t for row in column(train, tags_column) for t in row]
    if not values:
        raise HftkError(f"training data has no tags in column {tags_column!r}")
    if all(isinstance(v, str) for v in values):
        return sorted(set(values))
    if all(isinstance(v, int) for v in values) and min(values) >= 0:
        return [str(i) for i in range(max(values) + 1)]
    raise HftkError(f"tags in column {tags_column!r} must all be strings or all non-negative int ids")


def is_entity_scheme(tag_names: Sequence[str]) -> bool:
    """BIO/IOBES-style tags (O, B-PER, I-PER, ...) get entity-level seqeval scores."""
    return all(_ENTITY_TAG.match(t) for t in tag_names) and any(t != "O" for t in tag_names)


def tokenize_and_align_labels(
    examples: dict[str, list],
    tokenizer: PreTrainedTokenizerBase,
    *,
    tag_names: Sequence[str],
    tokens_column: str = "tokens",
    tags_column: str = "ner_tags",
    label_all_tokens: bool = False,
    max_seq_length: int | None = None,
    split: str = "data",
) -> dict[str, list]:
    """Batched map function: `labels` per sub-token and `word_ids` (word index at first sub-tokens, else -1)."""
    label2id = {name: i for i, name in enumerate(tag_names)}
    # B-X -> I-X for continuation sub-tokens when label_all_tokens (if the I- tag exists).
    b_to_i = [label2id.get("I-" + n[2:], i) if n.startswith("B-") else i for i, n in enumerate(tag_names)]

    def tag_id(tag: Any) -> int:
        if isinstance(tag, str):
            if tag not in label2id:
                raise HftkError(f"{split} data has tag {tag!r} that is not in the training tags {list(tag_names)}; fix the data")
            return label2id[tag]
        if tag is None or not 0 <= int(tag) < len(tag_names):
            raise HftkError(f"{split} data has tag id {tag!r} outside 0..{len(tag_names) - 1}; fix the data")
        return int(tag)

    for i, (words, tags) in enumerate(zip(examples[tokens_column], examples[tags_column])):
        if words is None or tags is None or len(words) != len(tags):
            raise HftkError(
                f"{split} example {i} has {len(words or [])} words but {len(tags or [])} tags; each word needs one tag"
            )
    encoded = tokenizer(
        examples[tokens_column],
        is_split_into_words=True,
        truncation=True,
        max_length=max_seq_length,
    )
    all_labels, all_word_ids = [], []
    for i, tags in enumerate(examples[tags_column]):
        ids = [tag_id(t) for t in tags]
        labels, first_of_word, previous = [], [], None
        for word in encoded.word_ids(i):
            if word is None:
                labels.append(IGNORE)
                first_of_word.append(-1)
            elif word != previous:
                labels.append(ids[word])
                first_of_word.append(word)
            else:
                labels.append(b_to_i[ids[word]] if label_all_tokens else IGNORE)
                first_of_word.append(-1)
            previous = word
        all_labels.append(labels)
        all_word_ids.append(first_of_word)
    encoded["labels"] = all_labels
    encoded["word_ids"] = all_word_ids
    return dict(encoded)


def logits_to_word_tags(
    predictions: Any, word_ids: Sequence[Sequence[int]], num_words: Sequence[int], tag_names: Sequence[str]
) -> list[list[str]]:
    """Word-level tags from per-token logits (n, seq_len, num_labels) or token ids (n, seq_len).

    Each word takes the tag predicted at its first sub-token; words without one (truncated) are "O".
    """
    out = []
    for i, (positions, n) in enumerate(zip(word_ids, num_words)):
        row = np.asarray(predictions[i])
        ids = row.argmax(-1) if row.ndim == 2 else row
        tags = ["O"] * n
        for pos, word in enumerate(positions):
            if word >= 0:
                tags[word] = tag_names[int(ids[pos])]
        out.append(tags)
    return out


def compute_ner_metrics(predictions: list[list[str]], references: list[list[str]], entity_level: bool = True) -> dict[str, float]:
    """precision/recall/f1 (seqeval, entity level, when `entity_level`) and token `accuracy`."""
    flat_pred = [t for row in predictions for t in row]
    flat_ref = [t for row in references for t in row]
    if len(flat_pred) != len(flat_ref):
        raise HftkError(f"predicted {len(flat_pred)} word tags for {len(flat_ref)} gold tags")
    accuracy = float(np.mean([p == r for p, r in zip(flat_pred, flat_ref)])) if flat_ref else 0.0
    if not entity_level:
        return {"accuracy": accuracy}
    from hftk.metrics import load_metric

    # zero_division=0: what "warn" gives, without a warning per evaluation while no entity is predicted yet
    result = load_metric("seqeval").compute(predictions=predictions, references=references, zero_division=0)
    return {
        "precision": float(result["overall_precision"]),
        "recall": float(result["overall_recall"]),
        "f1": float(result["overall_f1"]),
        "accuracy": accuracy,
    }


def prepare_ner(
    tokenizer: PreTrainedTokenizerBase,
    *,
    dataset_name: str | None = None,
    dataset_config: str | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    validation_split: str = "validation",
    raw: datasets.DatasetDict | None = None,
    tokens_column: str = "tokens",
    tags_column: str = "ner_tags",
    label_names: Sequence[str] | None = None,
    label_all_tokens: bool = False,
    max_seq_length: int | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    train_sample_seed: int | None = None,
    cache_dir: str | None = None,
) -> TaskData:
    """Load and featurise a token classification set (wnut16: `ner_tags`; brown_pos: `tags_column="tags"`).

    Evaluation features label only first sub-tokens (whatever `label_all_tokens`), so the
    eval loss and the metrics are per word.
    """
    require_fast_tokenizer(tokenizer, "token classification")
    if raw is None:
        raw = load_splits(
            dataset_name=dataset_name, dataset_config=dataset_config,
            data_files={"train": train_file, validation_split: validation_file}, cache_dir=cache_dir,
        )
    train = take(raw["train"], max_train_samples, seed=train_sample_seed) if "train" in raw else None
    if train is None and label_names is None:
        require_split(raw, "train", "the tag set is read from the training data")
    evals = {validation_split: take(raw[validation_split], max_eval_samples)} if validation_split in raw else {}
    for split, ds in [("train", train), *evals.items()]:
        if ds is not None:
            options = {tokens_column: "data.tokens_column", tags_column: "data.tags_column"}
            require_columns(ds, [tokens_column, tags_column], split, options)
            require_column_types(ds, {tokens_column: "words", tags_column: "tags"}, split, options)
    # A random label-budget subset (learning curves) keeps the whole training set's tag set: every
    # curve run gets the same head, and a tag the subset happens to miss can still be scored.
    tagged = raw["train"] if train is not None and train_sample_seed is not None else train
    tag_names = infer_tag_names(tagged, tags_column, label_names) if train is not None else list(label_names)
    entity_level = is_entity_scheme(tag_names)
    max_len = effective_max_length(tokenizer, max_seq_length or tokenizer.model_max_length)

    def featurize(ds: datasets.Dataset, split: str, all_tokens: bool) -> datasets.Dataset:
        kwargs = dict(
            tokenizer=tokenizer, tag_names=tag_names, tokens_column=tokens_column, tags_column=tags_column,
            label_all_tokens=all_tokens, max_seq_length=max_len, split=split,
        )
        return ds.map(tokenize_and_align_labels, batched=True, remove_columns=ds.column_names, fn_kwargs=kwargs,
                      desc=f"align tags ({split})")

    columns = model_columns(tokenizer, ["labels"])
    train_features = keep_columns(featurize(train, "train", label_all_tokens), columns) if train is not None else None
    eval_full = {split: featurize(ds, split, False) for split, ds in evals.items()}

    def compute_metrics(split: str, predictions: Any) -> dict[str, float]:
        examples = evals[split]
        gold = [[_tag_name(t, tag_names) for t in row] for row in column(examples, tags_column)]
        predicted = logits_to_word_tags(predictions, column(eval_full[split], "word_ids"), [len(g) for g in gold], tag_names)
        return compute_ner_metrics(predicted, gold, entity_level)

    def records(split: str, predictions: Any) -> list[dict[str, Any]]:
        examples = evals[split]
        gold = [[_tag_name(t, tag_names) for t in row] for row in column(examples, tags_column)]
        predicted = logits_to_word_tags(predictions, column(eval_full[split], "word_ids"), [len(g) for g in gold], tag_names)
        tokens = column(examples, tokens_column)
        return [{"tokens": t, "prediction": p, "label": g} for t, p, g in zip(tokens, predicted, gold)]

    return TaskData(
        kind="token_classification",
        train=train_features,
        eval={split: keep_columns(ds, columns) for split, ds in eval_full.items()},
        collator=DataCollatorForTokenClassification(tokenizer),
        compute_metrics=compute_metrics,
        main_metric="f1" if entity_level else "accuracy",
        num_labels=len(tag_names),
        id2label=dict(enumerate(tag_names)),
        eval_examples=evals,
        eval_features=eval_full,
        predictions=records,
    )


def _tag_name(tag: Any, tag_names: Sequence[str]) -> str:
    return tag if isinstance(tag, str) else tag_names[int(tag)]
