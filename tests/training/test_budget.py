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
    assert not budget.time_driven
    assert budget.progress(10, 59.0) == pytest.approx(0.1)  # steps set the schedule, however slow the machine
    assert not budget.done(99, 59.0) and budget.done(100, 1.0) and budget.done(1, 60.0)
    assert budget.stop_reason(99, 59.0) is None
    assert budget.stop_reason(100, 1.0) == "max_steps"
    assert budget.stop_reason(1, 60.0) == "max_time_minutes"
    assert Budget(steps_per_epoch=10, tokens_per_step=1, num_train_epochs=2, max_steps=50).stop_reason(20, 0) == "num_train_epochs"
    assert Budget(steps_per_epoch=10, tokens_per_step=8, max_tokens=80, max_steps=50).stop_reason(10, 0) == "max_tokens"
    assert Budget(steps_per_epoch=10, tokens_per_step=1, max_time_seconds=60).time_driven


def test_time_budget_beside_a_step_budget_does_not_change_the_schedule():
    """The same steps give the same learning rates whether the clock runs fast or slow."""
    rates = []
    for seconds_per_step in (0.0, 1.0, 50.0):
        opt = optimizer()
        budget = Budget(steps_per_epoch=100, tokens_per_step=1, max_steps=20, max_time_seconds=60.0)
        scheduler = make_scheduler("linear", opt, budget, warmup_ratio=0.1, warmup_steps=None)
        lrs = []
        for step in range(1, 21):
            lrs.append(opt.param_groups[0]["lr"])
            advance_scheduler(scheduler, budget, step, step * seconds_per_step)
        rates.append(lrs)
    assert rates[0] == rates[1] == rates[2]
    assert rates[0][10] == pytest.approx((20 - 10) / 18)


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


def test_min_steps_raises_an_epoch_budget_over_a_small_training_set_only():
    small = Budget(steps_per_epoch=32, tokens_per_step=1, num_train_epochs=3, min_steps=300)
    assert small.total_steps() == 300 and small.epochs_raised()  # 3 epochs = 96 steps, raised to 300 (~9.4 epochs)
    assert small.stop_reason(299, 0) is None and small.stop_reason(300, 0) == "min_steps"
    large = Budget(steps_per_epoch=200, tokens_per_step=1, num_train_epochs=3, min_steps=300)
    assert large.total_steps() == 600 and not large.epochs_raised() and large.stop_reason(600, 0) == "num_train_epochs"
    capped = Budget(steps_per_epoch=32, tokens_per_step=1, num_train_epochs=3, min_steps=300, max_tokens=200)
    assert capped.total_steps() == 200  # another limit still ends it first
    assert Budget(steps_per_epoch=32, tokens_per_step=1, max_steps=50, min_steps=300).total_steps() == 50  # no epoch budget to raise
