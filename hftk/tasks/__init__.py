"""Task-specific data preparation for `hftk finetune`: each task module builds a `TaskData`.

    >>> from hftk.tasks import get_task
    >>> task = get_task("glue")("mrpc", tokenizer, train_file=..., validation_file=...)
    >>> model = getattr(transformers, task.auto_model_class).from_pretrained(
    ...     path, num_labels=task.num_labels, id2label=task.id2label, label2id=task.label2id,
    ...     problem_type=task.problem_type)

Task modules are imported lazily so that `import hftk.tasks` stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from hftk.errors import HftkError
from hftk.recipe.tasks import TASKS as TASK_SPECS
from hftk.tasks.common import TaskData

# `hftk finetune <name>` -> (module, prepare function), from the one task registry.
TASKS: dict[str, tuple[str, str]] = {name: (spec.module, spec.prepare) for name, spec in TASK_SPECS.items()}

__all__ = ["TASKS", "TaskData", "get_task"]


def get_task(name: str) -> Callable[..., TaskData]:
    """The `prepare_*` function of task `name` (glue, classification, qa, ner, generation, translation, summarization)."""
    if name not in TASKS:
        raise HftkError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    module, function = TASKS[name]
    return getattr(importlib.import_module(module), function)

