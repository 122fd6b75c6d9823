"""The distillation losses against hand computations and their documented limits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hftk.distill.loss import IGNORE, distillation_loss, hidden_state_loss, regression_distillation_loss, soft_target_loss


def softmax(values: list[float], temperature: float) -> list[float]:
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


def test_soft_and_hard_terms_match_a_hand_computation():
    student = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    teacher = [[2.0, 1.0, 0.0], [0.5, 0.5, 2.5]]
    labels = [1, 2]
    t, alpha = 2.0, 0.3
    kl = 0.0
    for s_row, t_row in zip(student, teacher):
        p, q = softmax(t_row, t), softmax(s_row, t)
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    kl /= 2
    ce = -sum(math.log(softmax(row, 1.0)[y]) for row, y in zip(student, labels)) / 2
    expected = alpha * t * t * kl + (1 - alpha) * ce
    got = distillation_loss(torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), temperature=t, alpha=alpha)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_temperature_one_alpha_one_is_plain_cross_entropy():
    torch.manual_seed(0)
    student = torch.randn(5, 4, requires_grad=True)
    labels = torch.tensor([0, 3, 1, 1, 2])
    # A teacher whose distribution is the one-hot label: the loss is exactly cross-entropy.
    one_hot_teacher = F.one_hot(labels, 4).float() * 1e4
    loss = distillation_loss(student, one_hot_teacher, labels, temperature=1.0, alpha=1.0)
    assert float(loss) == pytest.approx(float(F.cross_entropy(student, labels)), rel=1e-6)
    # Any teacher: same value up to the teacher's entropy, same gradient as soft-label cross-entropy.
    teacher = torch.randn(5, 4)
    probs = teacher.softmax(-1)
    loss = distillation_loss(student, teacher, labels, temperature=1.0, alpha=1.0)
    (grad,) = torch.autograd.grad(loss, student)
    soft_ce = F.cross_entropy(student, probs)
    (expected_grad,) = torch.autograd.grad(soft_ce, student)
    entropy = -(probs * probs.log()).sum(-1).mean()
    assert float(loss) == pytest.approx(float(soft_ce - entropy), rel=1e-5)
    assert torch.allclose(grad, expected_grad, atol=1e-6)


def test_alpha_zero_is_cross_entropy_at_any_temperature():
    torch.manual_seed(1)
    student, teacher, labels = torch.randn(6, 3), torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    loss = distillation_loss(student, teacher, labels, temperature=5.0, alpha=0.0)
    assert float(loss) == pytest.approx(float(F.cross_entropy(student, labels)), rel=1e-6)


def test_unlabelled_rows_only_feel_the_teacher():
    student, teacher = torch.tensor([[0.0, 1.0], [2.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([1, IGNORE])
    both = distillation_loss(student, teacher, labels, temperature=1.0, alpha=0.5)
    hard_first_row = F.cross_entropy(student[:1], labels[:1])
    assert float(both) == pytest.approx(0.5 * float(soft_target_loss(student, teacher, 1.0)) + 0.5 * float(hard_first_row), rel=1e-6)
    none_labelled = distillation_loss(student, teacher, torch.tensor([IGNORE, IGNORE]), temperature=1.0, alpha=0.5)
    assert float(none_labelled) == pytest.approx(0.5 * float(soft_target_loss(student, teacher, 1.0)), rel=1e-6)


def test_mask_selects_positions_and_equal_distributions_cost_nothing():
    logits = torch.randn(2, 3, 5)
    assert float(soft_target_loss(logits, logits.clone(), 3.0)) == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(2, 3, 5)
    mask = torch.tensor([[1, 0, 0], [0, 0, 1]])
    picked = soft_target_loss(torch.stack([logits[0, 0], logits[1, 2]]), torch.stack([other[0, 0], other[1, 2]]), 3.0)
    assert float(soft_target_loss(logits, other, 3.0, mask)) == pytest.approx(float(picked), rel=1e-6)


def test_regression_mix_and_hidden_state_loss():
    student, teacher, labels = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 2.0]), torch.tensor([1.0, 4.0])
    assert float(regression_distillation_loss(student, teacher, labels, alpha=0.25)) == pytest.approx(0.25 * 0.5 + 0.75 * 2.0)
    a, b = torch.zeros(1, 3, 2), torch.ones(1, 3, 2)
    mask = torch.tensor([[1, 1, 0]])
    b[0, 2] = 100.0  # padding: ignored
    assert float(hidden_state_loss([a, a], [b, b], mask)) == pytest.approx(1.0)
