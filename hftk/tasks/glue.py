"""The nine GLUE tasks: Hub layout of `nyu-mll/glue`, label names, eval splits and main metric.

Main metric for best-checkpoint selection, as HF's `run_glue.py` reports it: tasks with one
GLUE metric use it (cola: matthews_correlation; others: accuracy); tasks with two (mrpc, qqp:
accuracy and F1; stsb: Pearson and Spearman) select on `combined_score`, their mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
from transformers import PreTrainedTokenizerBase

from hftk.errors import HftkError
from hftk.tasks.classification import REGRESSION, SINGLE, LabelSpace, build_sequence_task
from hftk.tasks.common import TaskData, load_splits, require_split, take

GLUE_HUB_PATH = "nyu-mll/glue"


@dataclass(frozen=True)
class GlueTask:
    name: str
    sentence1_key: str
    sentence2_key: str | None
    label_names: tuple[str, ...]  # empty for the regression task stsb
    validation_splits: tuple[str, ...]
    main_metric: str

    @property
    def num_labels(self) -> int:
        return len(self.label_names) or 1

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def label_space(self) -> LabelSpace:
        if self.is_regression:
            return LabelSpace(REGRESSION, ())
        return LabelSpace(SINGLE, self.label_names, {n: i for i, n in enumerate(self.label_names)})


def _task(name, s1, s2, labels, main="accuracy", splits=("validation",)) -> GlueTask:
    return GlueTask(name, s1, s2, tuple(labels), tuple(splits), main)


# Column names and label names exactly as in the `nyu-mll/glue` Hub configs.
GLUE_TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in [
        _task("cola", "sentence", None, ["unacceptable", "acceptable"], "matthews_correlation"),
        _task("sst2", "sentence", None, ["negative", "positive"]),
        _task("mrpc", "sentence1", "sentence2", ["not_equivalent", "equivalent"], "combined_score"),
        _task("qqp", "question1", "question2", ["not_duplicate", "duplicate"], "combined_score"),
        _task("stsb", "sentence1", "sentence2", [], "combined_score"),
        _task("mnli", "premise", "hypothesis", ["entailment", "neutral", "contradiction"],
              splits=("validation_matched", "validation_mismatched")),
        _task("qnli", "question", "sentence", ["entailment", "not_entailment"]),
        _task("rte", "sentence1", "sentence2", ["entailment", "not_entailment"]),
        _task("wnli", "sentence1", "sentence2", ["not_entailment", "entailment"]),
    ]
}


def get_glue_task(name: str) -> GlueTask:
    key = name.lower().replace("-", "")
    if key not in GLUE_TASKS:
        raise HftkError(f"unknown GLUE task {name!r}; choose one of {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[key]


def compute_glue_metrics(task: str | GlueTask, predictions: Any, references: Any) -> dict[str, float]:
    """The official GLUE metric of the task from logits, plus `combined_score` where it has two."""
    from hftk.metrics import load_metric

    spec = task if isinstance(task, GlueTask) else get_glue_task(task)
    logits = np.asarray(predictions)
    preds = logits.reshape(-1).tolist() if spec.is_regression else logits.argmax(-1).tolist()
    refs = np.asarray(references).reshape(-1).tolist()
    result = load_metric("glue", config_name=spec.name).compute(predictions=preds, references=refs)
    result = {k: float(v) for k, v in result.items()}
    if len(result) > 1:
        result["combined_score"] = float(np.mean(list(result.values())))
    return result


def load_glue(
    task: str,
    *,
    train_file: str | None = None,
    validation_file: str | Mapping[str, str] | None = None,
    cache_dir: str | None = None,
) -> datasets.DatasetDict:
    """`nyu-mll/glue` from the Hub, or local files in the same column layout.

    `validation_file` is one path (for mnli: the matched set) or {split name: path}.
    """
    spec = get_glue_task(task)
    if train_file is None and validation_file is None:
        return load_splits(dataset_name=GLUE_HUB_PATH, dataset_config=spec.name, cache_dir=cache_dir)
    if isinstance(validation_file, Mapping):
        evals = dict(validation_file)
    else:
        evals = {spec.validation_splits[0]: validation_file}
    unknown = set(evals) - set(spec.validation_splits)
    if unknown:
        raise HftkError(f"GLUE {spec.name} has validation splits {list(spec.validation_splits)}, not {sorted(unknown)}")
    return load_splits(data_files={"train": train_file, **evals}, cache_dir=cache_dir)


def prepare_glue(
    task: str,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_seq_length: int = 128,
    train_file: str | None = None,
    validation_file: str | Mapping[str, str] | None = None,
    raw: datasets.DatasetDict | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    train_sample_seed: int | None = None,
    cache_dir: str | None = None,
) -> TaskData:
    """Featurise a GLUE task: train split (if present) and every validation split it has.

    Labels may be ids (Hub layout) or the label names (e.g. "entailment") in local files.
    """
    spec = get_glue_task(task)
    if raw is None:
        raw = load_glue(spec.name, train_file=train_file, validation_file=validation_file, cache_dir=cache_dir)
    train = take(raw["train"], max_train_samples, seed=train_sample_seed) if "train" in raw else None
    evals = {s: take(raw[s], max_eval_samples) for s in spec.validation_splits if s in raw}
    if train is None and not evals:
        require_split(raw, "train", f"GLUE {spec.name} needs train and/or {list(spec.validation_splits)}")
    return build_sequence_task(
        train, evals, tokenizer, space=spec.label_space,
        text_column=spec.sentence1_key, text_pair_column=spec.sentence2_key, label_column="label",
        max_seq_length=max_seq_length, compute=lambda p, r: compute_glue_metrics(spec, p, r),
        main_metric=spec.main_metric,
    )
