"""Training budgets (steps, epochs, tokens, wall-clock) and the LR schedule fitted to them.

BUDGET_RULE below is the rule, word for word as `--help` states it. The step budget fixes the
schedule -- transformers' `get_scheduler` over exactly that many steps -- so a run is the same on
any machine and a killed-and-resumed run equals an uninterrupted one. Only when the time budget
is the sole limit does the schedule follow elapsed time (a virtual step count driven by the clock).
Every run prints `describe()` when it starts and `describe_stop()` when it ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and transformers load only with the schedule: `hftk --help` states BUDGET_RULE without them
    import torch

VIRTUAL_STEPS = 10_000
BUDGET_RULE = (
    "Budget: training.max_steps, when set, is the number of optimizer steps (it overrides num_train_epochs, "
    "min_steps and max_tokens, as in transformers' TrainingArguments). Otherwise num_train_epochs (raised to at "
    "least training.min_steps steps when the training set is small) or max_tokens, whichever ends first. "
    "training.max_time_minutes beside a step budget only stops a slow run early (the learning-rate schedule "
    "stays); alone, the schedule follows the clock. Every run prints its budget when it starts and what "
    "stopped it when it ends."
)


@dataclass
class Budget:
    """Whichever limit comes first ends training."""

    steps_per_epoch: int
    tokens_per_step: int
    max_steps: int | None = None
    num_train_epochs: float | None = None
    max_tokens: int | None = None
    max_time_seconds: float | None = None
    min_steps: int | None = None  # an epoch budget trains at least this many steps (small training sets)

    def epoch_steps(self) -> int | None:
        """Steps num_train_epochs gives, raised to min_steps; None without an epoch budget."""
        if self.num_train_epochs is None:
            return None
        return max(math.ceil(self.num_train_epochs * self.steps_per_epoch), self.min_steps or 0)

    def total_steps(self) -> int | None:
        """Optimizer steps the budget allows, or None when only wall-clock time limits it (BUDGET_RULE)."""
        if self.max_steps is not None:
            return max(1, self.max_steps)
        limits = []
        if self.num_train_epochs is not None:
            limits.append(self.epoch_steps())
        if self.max_tokens is not None:
            limits.append(math.ceil(self.max_tokens / self.tokens_per_step))
        return max(1, min(limits)) if limits else None

    @property
    def time_driven(self) -> bool:
        """The schedule follows the clock: a time budget and no step-countable one."""
        return self.max_time_seconds is not None and self.total_steps() is None

    def progress(self, step: int, elapsed: float) -> float:
        """How far along the schedule is: by steps when they are countable, else by time."""
        total = self.total_steps()
        if total is not None:
            return min(1.0, step / total)
        return min(1.0, elapsed / self.max_time_seconds)

    def stop_reason(self, step: int, elapsed: float) -> str | None:
        """The recipe key of the limit that ends training now (or None): the step budget's, or max_time_minutes."""
        total = self.total_steps()
        if total is not None and step >= total:
            return self.step_limit_name()
        if self.max_time_seconds is not None and elapsed >= self.max_time_seconds:
            return "max_time_minutes"
        return None

    def step_limit_name(self) -> str | None:
        """Which of max_steps / num_train_epochs (min_steps) / max_tokens sets total_steps()."""
        total = self.total_steps()
        if self.max_steps is not None:
            return "max_steps"
        if self.num_train_epochs is not None and max(1, self.epoch_steps()) == total:
            return "min_steps" if self.epochs_raised() else "num_train_epochs"
        return "max_tokens" if total is not None else None

    def epochs_raised(self) -> bool:
        """min_steps, not num_train_epochs, sets the epoch budget (a small training set)."""
        return self.num_train_epochs is not None and self.epoch_steps() > math.ceil(self.num_train_epochs * self.steps_per_epoch)

    def done(self, step: int, elapsed: float) -> bool:
        return self.stop_reason(step, elapsed) is not None

    def describe(self, rows: int | None = None) -> str:
        """The budget in one line, for the start of a run: "budget: 300 steps (min_steps; 150 epochs of 48 rows)".

        `rows`: training examples (None for a stream, which has no epochs).
        """
        total = self.total_steps()
        clock = f"{self.max_time_seconds / 60:g} minutes" if self.max_time_seconds is not None else ""
        if total is None:
            return f"budget: {clock} (max_time_minutes; the learning-rate schedule follows the clock)"
        epochs = f"{total / self.steps_per_epoch:.3g} epochs of {rows:,} rows" if rows else ""
        name = self.step_limit_name()
        if name == "num_train_epochs":
            detail = f"num_train_epochs={self.num_train_epochs:g}" + (f" of {rows:,} rows" if rows else "")
        elif name == "min_steps":
            plain = math.ceil(self.num_train_epochs * self.steps_per_epoch)
            detail = (
                f"min_steps; {epochs}: num_train_epochs={self.num_train_epochs:g} alone would be {plain} steps, "
                "--set training.min_steps=null keeps it"
            )
        elif name == "max_tokens":
            detail = f"max_tokens={self.max_tokens:,}, {self.tokens_per_step:,} tokens a step"
        else:
            detail = "; ".join(part for part in ("max_steps", epochs) if part)
        early = f"; max_time_minutes may stop it after {clock}" if clock else ""
        return f"budget: {total:,} steps ({detail}){early}"

    def describe_stop(self, reason: str | None, step: int) -> str:
        """What ended a run, in one line: "stopped at step 20: max_steps reached"."""
        words = {
            "max_steps": "max_steps reached",
            "num_train_epochs": f"{self.num_train_epochs or 0:g} epochs done (num_train_epochs)",
            "min_steps": "min_steps reached",
            "max_tokens": "max_tokens reached",
            "max_time_minutes": "max_time_minutes reached",
            "early_stopping": "early stopping (the metric did not improve for early_stopping_patience evaluations)",
        }
        return f"stopped at step {step:,}: {words.get(reason, reason or 'the data ran out')}"


def make_scheduler(
    name: str, optimizer: torch.optim.Optimizer, budget: Budget, warmup_ratio: float, warmup_steps: int | None
) -> torch.optim.lr_scheduler.LRScheduler:
    from transformers import get_scheduler

    total = VIRTUAL_STEPS if budget.time_driven else budget.total_steps()
    if warmup_steps is not None:  # under a clock-driven schedule: virtual steps (1/10,000 of the budget each)
        warmup = warmup_steps
    else:
        warmup = round(warmup_ratio * total)
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)


def advance_scheduler(scheduler: torch.optim.lr_scheduler.LRScheduler, budget: Budget, step: int, elapsed: float) -> None:
    """Step the schedule; under a wall-clock budget, jump to the virtual step matching progress."""
    if budget.time_driven:
        scheduler.last_epoch = round(budget.progress(step, elapsed) * VIRTUAL_STEPS) - 1
    scheduler.step()


def recipe_budget(training) -> str:
    """The budget a recipe's training section sets, before the data is counted (BUDGET_RULE's words).

    For a run's first line; once the data is loaded the loop prints the exact steps (`Budget.describe`).
    """
    minutes = f"{training.max_time_minutes:g} minutes" if training.max_time_minutes else ""
    if training.max_steps is not None:
        steps = f"{training.max_steps:,} steps (max_steps)"
    else:
        parts = []
        if training.num_train_epochs is not None:
            at_least = getattr(training, "min_steps", None)
            parts.append(f"{training.num_train_epochs:g} epochs" + (f", at least {at_least:,} steps (min_steps)" if at_least else ""))
        if getattr(training, "max_tokens", None):
            parts.append(f"{training.max_tokens:,} tokens")
        steps = " or ".join(parts) + (", whichever ends first" if len(parts) > 1 else "")
    if not steps:
        return f"{minutes} (max_time_minutes)"
    return steps + (f", stopping early after {minutes}" if minutes else "")
