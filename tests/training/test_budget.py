"""Budgets end training at the first limit; the schedule reaches its end value exactly there."""

import math

import pytest
import torch

from hftk.training.budget import VIRTUAL_STEPS, Budget, advance_scheduler, make_scheduler


def optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_max_steps_wins_over_every_other_step_budget():
    """transformers' TrainingArguments rule: max_steps overrides num_train_epochs (and here min_steps, max_tokens)."""
    budget = Budget(steps_per_epoch=10, tokens_per_step=100, max_steps=50, num_train_epochs=2.5, max_tokens=3000, min_steps=300)
    assert budget.total_steps() == 50 and budget.step_limit_name() == "max_steps"
    assert budget.stop_reason(49, 0) is None and budget.stop_reason(50, 0) == "max_steps"
    # The case: ner with 3 epochs of 2 steps and max_steps=20 trains 20 steps, not 6.
    assert Budget(steps_per_epoch=2, tokens_per_step=1, num_train_epochs=3, max_steps=20).total_steps() == 20


def test_without_max_steps_the_first_of_epochs_and_tokens_wins():
    budget = Budget(steps_per_epoch=10, tokens_per_step=100, num_train_epochs=2.5, max_tokens=3000)
    assert budget.total_steps() == 25  # epochs: 25 < tokens: 30
    assert Budget(steps_per_epoch=10, tokens_per_step=100, num_train_epochs=4, max_tokens=3000).total_steps() == 30
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
    assert Budget(steps_per_epoch=10, tokens_per_step=1, num_train_epochs=2).stop_reason(20, 0) == "num_train_epochs"
    assert Budget(steps_per_epoch=10, tokens_per_step=8, max_tokens=80, num_train_epochs=50).stop_reason(10, 0) == "max_tokens"
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


def test_the_budget_line_says_what_sets_it():
    """The line every run prints first (the issue's wording for the README's 48-row command), and its end line."""
    raised = Budget(steps_per_epoch=2, tokens_per_step=1, num_train_epochs=3, min_steps=300)
    assert raised.describe(rows=48) == (
        "budget: 300 steps (min_steps; 150 epochs of 48 rows: num_train_epochs=3 alone would be 6 steps, "
        "--set training.min_steps=null keeps it)"
    )
    assert Budget(steps_per_epoch=2, tokens_per_step=1, num_train_epochs=3, max_steps=20).describe(rows=48) == (
        "budget: 20 steps (max_steps; 10 epochs of 48 rows)"
    )
    assert Budget(steps_per_epoch=200, tokens_per_step=1, num_train_epochs=3, min_steps=300).describe(rows=6400) == (
        "budget: 600 steps (num_train_epochs=3 of 6,400 rows)"
    )
    assert Budget(steps_per_epoch=1, tokens_per_step=4096, max_tokens=2_000_000).describe() == (
        "budget: 489 steps (max_tokens=2,000,000, 4,096 tokens a step)"
    )
    assert Budget(steps_per_epoch=50, tokens_per_step=1, max_steps=500, max_time_seconds=600).describe(rows=1600) == (
        "budget: 500 steps (max_steps; 10 epochs of 1,600 rows); max_time_minutes may stop it after 10 minutes"
    )
    assert Budget(steps_per_epoch=50, tokens_per_step=1, max_time_seconds=90).describe(rows=1600) == (
        "budget: 1.5 minutes (max_time_minutes; the learning-rate schedule follows the clock)"
    )
    assert raised.describe_stop("min_steps", 300) == "stopped at step 300: min_steps reached"
    steps_only = Budget(steps_per_epoch=1, tokens_per_step=1, max_steps=500)  # pretraining: no epoch budget at all
    assert steps_only.describe_stop("max_steps", 500) == "stopped at step 500: max_steps reached"
    assert steps_only.describe_stop("early_stopping", 40).startswith("stopped at step 40: early stopping")
    assert Budget(steps_per_epoch=2, tokens_per_step=1, num_train_epochs=3).describe_stop("num_train_epochs", 6) == (
        "stopped at step 6: 3 epochs done (num_train_epochs)"
    )
