"""What every fine-tuning task hands the training loop, and the data loading they share.

Each task module (glue, classification, qa, ner, generation) turns raw examples into a
`TaskData`: model-ready datasets, a collator, label metadata for the model config and a
`compute_metrics(split, predictions)` closure. The loop never needs to know which task it runs
beyond `TaskData.kind`, which says which AutoModel head to load.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import datasets

from hftk.data.splits import check_text_file, load_splits, take  # noqa: F401 (every task loads its data through these)
from hftk.errors import HftkError
from hftk.recipe.tasks import AUTO_MODEL_CLASSES, TaskKind



@dataclass
class TaskData:
    """Everything the fine-tuning loop needs for one task.

    `compute_metrics(split, predictions)` takes the predictions for `eval[split]`, in order:
    - sequence_classification: logits, shape (n, num_labels) ((n,) or (n, 1) for regression);
    - question_answering: a pair (start_logits, end_logits), each (n_features, seq_len);
    - token_classification: logits (n, seq_len, num_labels), padded anywhere past each feature;
    - causal_lm, seq2seq_lm: the generated texts (list[str]) for `eval_examples[split]`, in order.
    """

    kind: TaskKind
    train: datasets.Dataset | None
    eval: dict[str, datasets.Dataset]
    collator: Callable[[list[dict[str, Any]]], dict[str, Any]]
    compute_metrics: Callable[[str, Any], dict[str, float]]
    main_metric: str
    greater_is_better: bool = True
    num_labels: int | None = None
    id2label: dict[int, str] | None = None
    problem_type: str | None = None
    eval_examples: dict[str, datasets.Dataset] = field(default_factory=dict)
    # Eval features with the bookkeeping columns post-processing needs (QA offsets, NER word ids).
    eval_features: dict[str, datasets.Dataset] = field(default_factory=dict)
    # Same input as compute_metrics; one JSON-able record per eval example, for predictions.jsonl.
    predictions: Callable[[str, Any], list[dict[str, Any]]] | None = None
    # Non-numeric facts about the scores for metrics.json (e.g. SacreBLEU signatures); same input as compute_metrics.
    metric_info: Callable[[str, Any], dict[str, Any]] | None = None

    @property
    def label2id(self) -> dict[str, int] | None:
        return None if self.id2label is None else {name: i for i, name in self.id2label.items()}

    @property
    def auto_model_class(self) -> str:
        """Name of the transformers Auto class whose head fits this task."""
        return AUTO_MODEL_CLASSES[self.kind]




def require_columns(
    dataset: datasets.Dataset, columns: Iterable[str | None], split: str, options: Mapping[str, str] | None = None
) -> None:
    """HftkError naming the missing columns, the ones that exist, and the recipe key that names each column.

    `options`: column -> the recipe key it came from (data.label_column), so the fix is a --set away.
    """
    missing = [c for c in columns if c is not None and c not in dataset.column_names]
    if missing:
        keys = [options[c] for c in missing if options and c in options]
        fix = f"set {' and '.join(keys)} to the column that holds them" if keys else "pass the right column names"
        raise HftkError(
            f"{split} data has no column(s) {', '.join(map(repr, missing))}; it has {dataset.column_names}. "
            f"Rename the columns or {fix}"
        )


def _is_label(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _is_answers(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("text"), list) and all(isinstance(t, str) for t in value["text"])
        and isinstance(value.get("answer_start"), list) and all(_is_label(s) for s in value["answer_start"])
    )


# What each kind of column must hold in every row: a test, and the words of the error. Checked
# before tokenising, so that a wrong type (a list where a string belongs, one nested row among
# flat ones) is one line naming the row, not a tokenizer or arrow error far from the data.
COLUMN_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "text": (lambda v: isinstance(v, str), "text (a string)"),
    "words": (lambda v: isinstance(v, list) and all(isinstance(w, str) for w in v), "a list of words (strings)"),
    "tags": (lambda v: isinstance(v, list) and all(_is_label(t) for t in v), "a list of tags (names or int ids)"),
    "label": (lambda v: _is_label(v) or (isinstance(v, list) and all(_is_label(x) for x in v)), "a label (a name, an int id or a number) or a list of labels"),
    "answers": (_is_answers, 'answers as {"text": [...], "answer_start": [...]}'),
}
_PLAIN = {"text": ("string", "large_string"), "label": ("string", "large_string", "int8", "int16", "int32", "int64", "float32", "float64")}


def require_column_types(
    dataset: datasets.Dataset, kinds: Mapping[str | None, str], split: str, options: Mapping[str, str] | None = None
) -> None:
    """HftkError naming the first row whose column holds the wrong type (e.g. a list where text belongs).

    `kinds`: column -> a COLUMN_KINDS key; empty values (None) are left to the checks that name them.
    """
    for name, kind in kinds.items():
        if name is None or name not in dataset.column_names:
            continue
        feature = dataset.features[name]
        if isinstance(feature, datasets.ClassLabel) or getattr(feature, "dtype", None) in _PLAIN.get(kind, ()):
            continue  # the arrow type already guarantees it: no need to read the rows
        test, expected = COLUMN_KINDS[kind]
        for index, value in enumerate(column(dataset, name)):
            if value is not None and not test(value):
                shown = repr(value)
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                option = f", or set {options[name]} to the right column" if options and name in options else ""
                raise HftkError(
                    f"{split} data row {index + 1}: column {name!r} holds {type(value).__name__} {shown} where {expected} "
                    f"belongs; fix that row{option}"
                )


def require_split(raw: datasets.DatasetDict, split: str, hint: str) -> datasets.Dataset:
    if split not in raw:
        raise HftkError(f"data has no {split!r} split (it has {list(raw)}); {hint}")
    return raw[split]


def require_fast_tokenizer(tokenizer: Any, task: str) -> None:
    """Offsets and word ids only exist on fast (Rust) tokenizers."""
    if not getattr(tokenizer, "is_fast", False):
        raise HftkError(
            f"{task} needs a fast tokenizer (offset mappings / word ids), got {type(tokenizer).__name__}; "
            "load it with AutoTokenizer.from_pretrained(..., use_fast=True) or save a tokenizer.json"
        )


def model_columns(tokenizer: Any, extra: Iterable[str]) -> list[str]:
    """The input names this tokenizer produces (token_type_ids only if it has them) plus `extra`."""
    return [*tokenizer.model_input_names, *extra]


def keep_columns(dataset: datasets.Dataset, columns: Iterable[str]) -> datasets.Dataset:
    return dataset.select_columns([c for c in columns if c in dataset.column_names])


def effective_max_length(tokenizer: Any, max_seq_length: int) -> int:
    """`max_seq_length`, capped by what the tokenizer/model supports (as HF scripts do)."""
    limit = getattr(tokenizer, "model_max_length", None)
    return min(max_seq_length, limit) if isinstance(limit, int) and limit > 0 else max_seq_length


def column(dataset: datasets.Dataset, name: str) -> list:
    """A whole column as a Python list (indexing a `datasets` Column element by element is slow)."""
    return dataset[name][:]
