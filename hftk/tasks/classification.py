"""Text and text-pair classification (single-label, multi-label or regression) on any data set.

Like HF's `run_classification.py`: the label set comes from the training data (string labels
sorted -> ids, int labels kept, float labels -> regression, list labels -> multi-label), texts
are truncated to `max_seq_length`, and batches are padded dynamically by
`DataCollatorWithPadding`. GLUE (`hftk.tasks.glue`) reuses everything here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

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
    require_split,
    take,
)

SINGLE = "single_label_classification"
MULTI = "multi_label_classification"
REGRESSION = "regression"


@dataclass(frozen=True)
class LabelSpace:
    """How raw labels become model targets; `names[i]` is the name of class id i."""

    problem_type: str
    names: tuple[str, ...]
    # str label -> id when labels are strings; None when they already are ids (ints/ClassLabel).
    str2id: dict[str, int] | None = None

    @property
    def num_labels(self) -> int:
        return 1 if self.problem_type == REGRESSION else len(self.names)

    @property
    def id2label(self) -> dict[int, str] | None:
        return None if self.problem_type == REGRESSION else dict(enumerate(self.names))


def infer_label_space(train: datasets.Dataset, label_column: str) -> LabelSpace:
    """Read the label set off the training data (and its features, for Hub ClassLabel columns)."""
    feature = train.features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        return LabelSpace(SINGLE, tuple(feature.names))
    inner = getattr(feature, "feature", None)  # Sequence / List of labels -> multi-label
    if isinstance(inner, datasets.ClassLabel):
        return LabelSpace(MULTI, tuple(inner.names))
    values = column(train, label_column)
    if inner is not None:
        flat = [v for row in values for v in row]
        return _space_from_values(MULTI, flat, label_column)
    dtype = getattr(feature, "dtype", None)
    if dtype is not None and dtype.startswith("float"):
        return LabelSpace(REGRESSION, ())
    return _space_from_values(SINGLE, values, label_column)


def _space_from_values(problem_type: str, values: Sequence[Any], label_column: str) -> LabelSpace:
    if any(v is None for v in values):
        raise HftkError(f"training data has empty values in label column {label_column!r}; drop or fill those rows")
    if not values:
        raise HftkError(f"training data has no labels in column {label_column!r}")
    if all(isinstance(v, str) for v in values):
        names = tuple(sorted(set(values)))
        return LabelSpace(problem_type, names, {name: i for i, name in enumerate(names)})
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        low, high = min(values), max(values)
        if low < 0:
            raise HftkError(f"label {low} in column {label_column!r} is negative; int labels must be class ids 0..n-1")
        return LabelSpace(problem_type, tuple(str(i) for i in range(high + 1)))
    kinds = sorted({type(v).__name__ for v in values})
    raise HftkError(f"label column {label_column!r} mixes or has unsupported types {kinds}; use strings or int ids")


def encode_labels(dataset: datasets.Dataset, label_column: str, space: LabelSpace, split: str) -> datasets.Dataset:
    """Add a `labels` column: ids, multi-hot floats or floats. HftkError for a label the model lacks."""

    def to_id(value: Any) -> int:
        if isinstance(value, str) and space.str2id is not None:
            if value not in space.str2id:
                raise HftkError(
                    f"{split} data has label {value!r} that is not among the model's labels {list(space.names)}; "
                    "fix the data or train on data that has it"
                )
            return space.str2id[value]
        if isinstance(value, str) or value is None or not 0 <= int(value) < len(space.names):
            raise HftkError(
                f"{split} data has label {value!r} outside the label ids 0..{len(space.names) - 1}; fix the data"
            )
        return int(value)

    def encode(batch: dict[str, list]) -> dict[str, list]:
        values = batch[label_column]
        if space.problem_type == REGRESSION:
            if any(v is None for v in values):
                raise HftkError(f"{split} data has empty values in label column {label_column!r}")
            return {"labels": [float(v) for v in values]}
        if space.problem_type == MULTI:
            hot = []
            for row in values:
                vec = [0.0] * len(space.names)
                for v in row or []:
                    vec[to_id(v)] = 1.0
                hot.append(vec)
            return {"labels": hot}
        return {"labels": [to_id(v) for v in values]}

    features = dataset.features.copy()
    if space.problem_type == SINGLE:
        features["labels"] = datasets.Value("int64")
    elif space.problem_type == MULTI:
        features["labels"] = datasets.Sequence(datasets.Value("float32"))
    else:
        features["labels"] = datasets.Value("float32")
    return dataset.map(encode, batched=True, features=features, desc=f"labels ({split})")


def tokenize_texts(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    *,
    text_column: str,
    text_pair_column: str | None,
    max_seq_length: int,
    split: str,
) -> datasets.Dataset:
    """Tokenise text (pairs) with truncation; padding is left to the collator (dynamic)."""

    def tokenize(batch: dict[str, list]) -> Any:
        for name in (text_column, text_pair_column):
            if name is not None and any(t is None for t in batch[name]):
                raise HftkError(f"{split} data has empty texts in column {name!r}; drop or fill those rows")
        pairs = batch[text_pair_column] if text_pair_column else None
        return tokenizer(batch[text_column], pairs, truncation=True, max_length=max_seq_length)

    tokenized = dataset.map(tokenize, batched=True, desc=f"tokenize ({split})")
    return keep_columns(tokenized, model_columns(tokenizer, ["labels"]))


def compute_classification_metrics(predictions: Any, references: Any, problem_type: str) -> dict[str, float]:
    """accuracy + macro-F1 (single-label); micro-F1 + subset accuracy (multi-label); Pearson/Spearman + MSE (regression)."""
    from hftk.metrics import load_metric

    logits = np.asarray(predictions)
    refs = np.asarray(references)
    if problem_type == REGRESSION:
        preds = logits.reshape(-1).astype(np.float64)
        refs = refs.reshape(-1).astype(np.float64)
        result = load_metric("glue", config_name="stsb").compute(predictions=preds.tolist(), references=refs.tolist())
        result = {k: float(v) for k, v in result.items()}
        result["mse"] = float(np.mean((preds - refs) ** 2))
        return result
    if problem_type == MULTI:
        hot = (logits > 0).astype(int)  # sigmoid(logit) > 0.5
        refs = refs.astype(int)
        f1 = load_metric("f1").compute(predictions=hot.reshape(-1).tolist(), references=refs.reshape(-1).tolist())
        return {"f1": float(f1["f1"]), "subset_accuracy": float(np.mean(np.all(hot == refs, axis=1)))}
    preds = logits.argmax(-1).tolist()
    refs_list = refs.tolist()
    accuracy = load_metric("accuracy").compute(predictions=preds, references=refs_list)["accuracy"]
    f1 = load_metric("f1").compute(predictions=preds, references=refs_list, average="macro")["f1"]
    return {"accuracy": float(accuracy), "f1": float(f1)}


def main_metric_for(problem_type: str) -> str:
    return {SINGLE: "accuracy", MULTI: "f1", REGRESSION: "pearson"}[problem_type]


def build_sequence_task(
    train: datasets.Dataset | None,
    evals: dict[str, datasets.Dataset],
    tokenizer: PreTrainedTokenizerBase,
    *,
    space: LabelSpace,
    text_column: str,
    text_pair_column: str | None,
    label_column: str,
    max_seq_length: int,
    compute: Any | None = None,
    main_metric: str | None = None,
    options: dict[str, str] | None = None,
) -> TaskData:
    """Shared by GLUE and generic classification: validate, encode labels, tokenise, wire metrics."""
    max_len = effective_max_length(tokenizer, max_seq_length)

    def featurize(dataset: datasets.Dataset, split: str) -> datasets.Dataset:
        require_columns(dataset, [text_column, text_pair_column, label_column], split, options)
        require_column_types(dataset, {text_column: "text", text_pair_column: "text", label_column: "label"}, split, options)
        labelled = encode_labels(dataset, label_column, space, split)
        return tokenize_texts(
            labelled, tokenizer, text_column=text_column, text_pair_column=text_pair_column,
            max_seq_length=max_len, split=split,
        )

    train_features = featurize(train, "train") if train is not None else None
    eval_features = {split: featurize(ds, split) for split, ds in evals.items()}
    metric_fn = compute or (lambda preds, refs: compute_classification_metrics(preds, refs, space.problem_type))

    def compute_metrics(split: str, predictions: Any) -> dict[str, float]:
        return metric_fn(predictions, column(eval_features[split], "labels"))

    def records(split: str, predictions: Any) -> list[dict[str, Any]]:
        scores = np.asarray(predictions)
        references = column(eval_features[split], "labels")
        if space.problem_type == "regression":
            return [{"prediction": float(p), "label": r} for p, r in zip(scores.reshape(len(scores), -1)[:, 0], references)]
        if space.problem_type == "multi_label_classification":
            chosen = [[i for i, x in enumerate(row) if x > 0] for row in scores]
        else:
            chosen = scores.argmax(-1).tolist()
        name = (lambda i: space.id2label.get(i, i)) if space.id2label else (lambda i: i)
        as_names = lambda v: [name(i) for i in v] if isinstance(v, list) else name(v)  # noqa: E731
        return [{"prediction": as_names(p), "label": as_names(r)} for p, r in zip(chosen, references)]

    return TaskData(
        kind="sequence_classification",
        train=train_features,
        eval=eval_features,
        collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
        main_metric=main_metric or main_metric_for(space.problem_type),
        num_labels=space.num_labels,
        id2label=space.id2label,
        problem_type=space.problem_type,
        eval_examples=dict(evals),
        predictions=records,
    )


def prepare_classification(
    tokenizer: PreTrainedTokenizerBase,
    *,
    dataset_name: str | None = None,
    dataset_config: str | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    validation_split: str = "validation",
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    max_seq_length: int = 128,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    train_sample_seed: int | None = None,
    raw: datasets.DatasetDict | None = None,
    cache_dir: str | None = None,
    label_space: LabelSpace | None = None,
) -> TaskData:
    """Load (Hub, local files, or `raw`) and featurise a classification set.

    The evaluation split is `validation_split` (with local files: `validation_file`); sets that
    ship only train/test (like fine_foods) pass `validation_split="test"`. The label set is read
    from the training data unless `label_space` is given (evaluation: the fine-tuned model's labels).
    """
    if raw is None:
        raw = load_splits(
            dataset_name=dataset_name, dataset_config=dataset_config,
            data_files={"train": train_file, validation_split: validation_file}, cache_dir=cache_dir,
        )
    train = take(raw["train"], max_train_samples, seed=train_sample_seed) if "train" in raw else None
    if train is None and label_space is None:
        require_split(raw, "train", "the label set is read from the training data")
    options = {text_column: "data.text_column", label_column: "data.label_column"}
    if text_pair_column:
        options[text_pair_column] = "data.text_pair_column"
    if train is not None:
        require_columns(train, [label_column], "train", options)
        require_column_types(train, {label_column: "label"}, "train", options)
    evals = {validation_split: take(raw[validation_split], max_eval_samples)} if validation_split in raw else {}
    # A random label-budget subset (learning curves) keeps the whole training set's labels (same head every run).
    labelled = raw["train"] if train is not None and train_sample_seed is not None else train
    space = label_space or infer_label_space(labelled, label_column)
    return build_sequence_task(
        train, evals, tokenizer, space=space, text_column=text_column, text_pair_column=text_pair_column,
        label_column=label_column, max_seq_length=max_seq_length, options=options,
    )
