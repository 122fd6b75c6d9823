"""Training budgets (steps, epochs, tokens, wall-clock) and the LR schedule fitted to them.

The schedule decays to its end value exactly when the budget runs out. With a step-countable
budget that is transformers' `get_scheduler` over the exact number of steps; with a
wall-clock budget the same schedule runs on a virtual step count driven by elapsed time.
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

    def total_steps(self) -> int | None:
        """Optimizer steps the budget allows, or None when only wall-clock time limits it."""
        limits = []
        if self.max_steps is not None:
            limits.append(self.max_steps)
        if self.num_train_epochs is not None:
            limits.append(math.ceil(self.num_train_epochs * self.steps_per_epoch))
        if self.max_tokens is not None:
            limits.append(math.ceil(self.max_tokens / self.tokens_per_step))
        return max(1, min(limits)) if limits else None

    @property
    def time_driven(self) -> bool:
        return self.max_time_seconds is not None

    def progress(self, step: int, elapsed: float) -> float:
        fractions = []
        total = self.total_steps()
        if total is not None:
            fractions.append(step / total)
        if self.max_time_seconds is not None:
            fractions.append(elapsed / self.max_time_seconds)
        return min(1.0, max(fractions))

    def done(self, step: int, elapsed: float) -> bool:
        return self.progress(step, elapsed) >= 1.0


def make_scheduler(
    name: str, optimizer: torch.optim.Optimizer, budget: Budget, warmup_ratio: float, warmup_steps: int | None
) -> torch.optim.lr_scheduler.LRScheduler:
    total = VIRTUAL_STEPS if budget.time_driven else budget.total_steps()
    if warmup_steps is not None and not budget.time_driven:
        warmup = warmup_steps
    elif warmup_steps is not None:
        # Convert real warmup steps to the virtual scale using the step budget if there is one.
        real_total = budget.total_steps()
        warmup = round(warmup_steps / real_total * VIRTUAL_STEPS) if real_total else warmup_steps
    else:
        warmup = round(warmup_ratio * total)
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)


def advance_scheduler(scheduler: torch.optim.lr_scheduler.LRScheduler, budget: Budget, step: int, elapsed: float) -> None:
    """Step the schedule; under a wall-clock budget, jump to the virtual step matching progress."""
    if budget.time_driven:
        scheduler.last_epoch = round(budget.progress(step, elapsed) * VIRTUAL_STEPS) - 1
    scheduler.step()
