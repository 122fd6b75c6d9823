"""Training budgets (steps, epochs, tokens, wall-clock) and the LR schedule fitted to them.

The rule when a recipe has both: a step-countable budget (max_steps, num_train_epochs,
max_tokens; the smallest wins) fixes the schedule -- transformers' `get_scheduler` over exactly
that many steps -- so a run is the same on any machine and a killed-and-resumed run equals an
uninterrupted one. `min_steps` raises an epoch budget over a small training set to at least that
many steps (more epochs), and never a `max_steps` the user set. A wall-clock budget (max_time_minutes) beside it only stops the run early,
with the schedule unchanged, and the run says so. Only when the time budget is the sole limit
does the schedule follow elapsed time (a virtual step count driven by the clock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from transformers import get_scheduler

VIRTUAL_STEPS = 10_000


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
        """Optimizer steps the budget allows, or None when only wall-clock time limits it."""
        limits = []
        if self.max_steps is not None:
            limits.append(self.max_steps)
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
        """Which of max_steps / num_train_epochs / max_tokens sets total_steps()."""
        total = self.total_steps()
        if self.max_steps is not None and max(1, self.max_steps) == total:
            return "max_steps"
        if self.num_train_epochs is not None and max(1, self.epoch_steps()) == total:
            return "min_steps" if self.epochs_raised() else "num_train_epochs"
        return "max_tokens" if total is not None else None

    def epochs_raised(self) -> bool:
        """min_steps, not num_train_epochs, sets the epoch budget (a small training set)."""
        return self.num_train_epochs is not None and self.epoch_steps() > math.ceil(self.num_train_epochs * self.steps_per_epoch)

    def done(self, step: int, elapsed: float) -> bool:
        return self.stop_reason(step, elapsed) is not None


def make_scheduler(
    name: str, optimizer: torch.optim.Optimizer, budget: Budget, warmup_ratio: float, warmup_steps: int | None
) -> torch.optim.lr_scheduler.LRScheduler:
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
