"""Teacher-labelled augmentation: extra training rows that carry no hard label.

Rows from `data.unlabeled_files` are tokenised like the training texts and get the label id
IGNORE, so only the soft-target (and hidden-state) terms learn from them: the teacher's cached
logits are their labels (TinyBERT's augmented task distillation).
"""

from __future__ import annotations

import datasets

from hftk.distill.loss import IGNORE
from hftk.errors import HftkError
from hftk.tasks.classification import tokenize_texts
from hftk.tasks.common import effective_max_length, load_splits, require_columns


def load_unlabeled(files: list[str], text_column: str, text_pair_column: str | None) -> datasets.Dataset:
    """The texts of every unlabelled file, one split."""
    parts = []
    for index, path in enumerate(files):
        raw = load_splits(data_files={"unlabeled": path})["unlabeled"]
        require_columns(raw, [text_column, text_pair_column], f"unlabeled file {path}")
        parts.append(raw.select_columns([c for c in (text_column, text_pair_column) if c]))
    if not parts:
        raise HftkError("data.unlabeled_files is empty")
    return datasets.concatenate_datasets(parts)


def featurize_unlabeled(
    raw: datasets.Dataset, tokenizer, like: datasets.Dataset, *, text_column: str, text_pair_column: str | None, max_seq_length: int
) -> datasets.Dataset:
    """Tokenise like the training set and add IGNORE labels; same columns and types as `like`."""
    rows = tokenize_texts(
        raw, tokenizer, text_column=text_column, text_pair_column=text_pair_column,
        max_seq_length=effective_max_length(tokenizer, max_seq_length), split="unlabeled",
    )
    rows = rows.add_column("labels", [IGNORE] * len(rows))
    return rows.select_columns(like.column_names).cast(like.features)
