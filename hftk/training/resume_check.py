"""`--resume` continues the run its checkpoint belongs to, or refuses: the recipes are compared key by key.

A run resumed with, say, another learning rate would go on with the checkpoint's optimizer and
schedule while its `recipe.yaml` recorded the new rate: the saved record would misstate what was
trained. So a run writes its resolved recipe into its folder when it starts (`recipe.yaml`,
replaced by the final one when it finishes), and resuming compares the recipe resolved now with
it. Only keys that cannot change what is trained may differ; any other difference is refused
with one line naming the keys.

A longer step budget is accepted only where the learning-rate schedule does not depend on it
(`constant`, or `constant_with_warmup` with `warmup_steps` fixed): linear, cosine and the other
decaying schedules end at the planned last step, so the steps already taken followed another
schedule than the longer budget gives; the resumed run would equal no uninterrupted run and its
recipe would misstate its learning rates. Continue such a run as a new one instead (start from
its saved model). `max_time_minutes` may change whenever a step budget is set: the schedule
follows the steps, and the time budget only stops a slow run early.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hftk.errors import HftkError

RECIPE_FILE = "recipe.yaml"

# Keys that cannot change what is trained: where the run goes, what it logs, how the same steps
# are computed (threads, recomputation, kernels, compilation), when checkpoints are written, and
# what happens once training is over.
UNTRAINED_KEYS = (
    "output.",
    "training.logging_steps",
    "training.report_to",
    "training.save_steps",
    "training.save_total_limit",
    "training.num_threads",
    "training.gradient_checkpointing",
    "training.torch_compile",
    "model.attn_implementation",
    "data.preprocessing_num_workers",
    "data.test_file",
    "teacher.batch_size",
)
# Same rows in other batches: the evaluation is unchanged unless max_eval_batches caps the rows read.
EVAL_BATCH_KEY = "training.per_device_eval_batch_size"
STEP_BUDGET_KEYS = ("training.max_steps", "training.num_train_epochs", "training.max_tokens", "training.min_steps")
TIME_BUDGET_KEY = "training.max_time_minutes"


def flatten(recipe: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"training.learning_rate": 0.001, "model.config.hidden_size": 256, ...}; lists stay whole."""
    flat: dict[str, Any] = {}
    for key, value in recipe.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def differences(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Every key whose value differs, as (old, new); a key one side lacks counts as unset (None)."""
    old, new = flatten(old), flatten(new)
    return {key: (old.get(key), new.get(key)) for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)}


def schedule_ignores_budget(training: dict[str, Any]) -> bool:
    """True when the learning rate of a step does not depend on the planned number of steps."""
    schedule = training.get("lr_scheduler_type")
    return schedule == "constant" or (schedule == "constant_with_warmup" and training.get("warmup_steps") is not None)


def refused(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The differences that could change what is trained (see the module docstring for what may differ)."""
    changes = differences(old, new)
    new_training = new.get("training") or {}
    has_step_budget = any(new_training.get(key.split(".")[1]) is not None for key in STEP_BUDGET_KEYS[:3])
    longer_is_safe = schedule_ignores_budget(old.get("training") or {}) and schedule_ignores_budget(new_training)

    def allowed(key: str, before: Any, after: Any) -> bool:
        if key.startswith(UNTRAINED_KEYS):
            return True
        if key == EVAL_BATCH_KEY:
            return new_training.get("max_eval_batches") is None
        if key == TIME_BUDGET_KEY:
            return has_step_budget
        if key in STEP_BUDGET_KEYS:
            return longer_is_safe and before is not None and after is not None and after >= before
        return False

    return {key: change for key, change in changes.items() if not allowed(key, *change)}


def check_resume(output_dir: Path, recipe_yaml: str) -> None:
    """HftkError (one line naming the keys) if resuming `output_dir` with `recipe_yaml` could change what is trained.

    A folder whose checkpoint predates recorded recipes has nothing to compare with and resumes as before.
    """
    saved = output_dir / RECIPE_FILE
    if not saved.is_file():
        return
    old, new = yaml.safe_load(saved.read_text()) or {}, yaml.safe_load(recipe_yaml) or {}
    changes = refused(old, new)
    if not changes:
        return
    listed = ", ".join(f"{key} {_show(before)} -> {_show(after)}" for key, (before, after) in changes.items())
    budget = any(key in STEP_BUDGET_KEYS for key in changes)
    why = " (a longer step budget needs a constant learning-rate schedule: the planned end shapes a decaying one)" if budget else ""
    raise HftkError(
        f"{output_dir}'s checkpoint was trained with another recipe: {listed}{why}; --resume continues that run only: "
        "restore these values, or start a new run with --overwrite or another output folder"
    )


def _show(value: Any) -> str:
    return "unset" if value is None else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")
