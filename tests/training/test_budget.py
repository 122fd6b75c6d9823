"""Budgets end training at the first limit; the schedule reaches its end value exactly there."""

import math

import pytest
import torch

from hftk.training.budget import VIRTUAL_STEPS, Budget, advance_scheduler, make_scheduler


def optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_first_limit_wins():
    budget = Budget(steps_per_epoch=10, tokens_per_step=100, max_steps=50, num_train_epochs=2.5, max_tokens=3000)
    assert budget.total_steps() == 25  # epochs: 25 < tokens: 30 < steps: 50
    assert Budget(steps_per_epoch=10, tokens_per_step=128, max_tokens=1000).total_steps() == math.ceil(1000 / 128)
    assert Budget(steps_per_epoch=10, tokens_per_step=1, max_time_seconds=60).total_steps() is None


def test_progress_and_done_with_steps_and_time():
    budget = Budget(steps_per_epoch=10, tokens_per_step=1, max_steps=100, max_time_seconds=60)
    assert budget.progress(10, 30.0) == pytest.approx(0.5)  # time is further along than steps
    assert budget.progress(80, 30.0) == pytest.approx(0.8)
    assert not budget.done(99, 59.0) and budget.done(100, 1.0) and budget.done(1, 60.0)


def test_step_budget_uses_transformers_linear_schedule_exactly():
    opt = optimizer()
    budget = Budget(steps_per_epoch=100, tokens_per_step=1, max_steps=20)
    scheduler = make_scheduler("linear", opt, budget, warmup_ratio=0.1, warmup_steps=None)
    lrs = []
    for step in range(1, 21):
        lrs.append(opt.param_groups[0]["lr"])
        advance_scheduler(scheduler, budget, step, 0.0)
    # Hand computation: warmup 2 steps (0, 0.5), then linear decay (20 - s) / 18.
    assert lrs[:3] == pytest.approx([0.0, 0.5, 1.0])
    assert lrs[10] == pytest.approx((20 - 10) / 18)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)  # decayed to zero exactly at the end


def test_time_budget_follows_elapsed_time():
    opt = optimizer()
    budget = Budget(steps_per_epoch=100, tokens_per_step=1, max_time_seconds=100.0)
    scheduler = make_scheduler("linear", opt, budget, warmup_ratio=0.0, warmup_steps=None)
    advance_scheduler(scheduler, budget, 1, 25.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.75, abs=1 / VIRTUAL_STEPS)
    advance_scheduler(scheduler, budget, 2, 50.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5, abs=1 / VIRTUAL_STEPS)
    advance_scheduler(scheduler, budget, 3, 100.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1 / VIRTUAL_STEPS)
