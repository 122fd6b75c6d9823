"""Task-specific data preparation for `hftk finetune`: each module builds a `TaskData`."""

from hftk.tasks.common import TaskData

__all__ = ["TaskData"]
