"""Distillation losses: soft targets mixed with the hard labels, and hidden-state matching.

Convention (Hinton et al. 2015; DistilBERT's `alpha_ce`): with temperature T and mix α,

    loss = α · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 − α) · CE(student, labels)

α weights the soft term; T² keeps its gradient scale independent of T. So α = 0 is plain
fine-tuning, and at T = 1, α = 1 the loss is the cross-entropy against the teacher's
probabilities minus their entropy (a constant: same gradients as soft-label cross-entropy);
when the teacher's distribution is the one-hot label it *is* plain cross-entropy.
Hand-written because transformers and accelerate ship no distillation loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100  # label id of rows/positions without a hard label (as in transformers' heads)
MASKED = -1e9  # logit of positions that are not classes (QA padding): probability 0, finite log


def soft_target_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """T² · KL(teacher_T ‖ student_T), summed over classes (last dim), mean over the selected rows."""
    student, teacher = student.reshape(-1, student.shape[-1]).float(), teacher.reshape(-1, teacher.shape[-1]).float()
    if mask is not None:
        keep = mask.reshape(-1).bool()
        student, teacher = student[keep], teacher[keep]
    if student.shape[0] == 0:
        return student.sum() * 0.0
    log_student = F.log_softmax(student / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher / temperature, dim=-1)
    kl = F.kl_div(log_student, log_teacher, reduction="sum", log_target=True) / student.shape[0]
    return kl * temperature**2


def hard_label_loss(student: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the rows that have a label (IGNORE rows, e.g. unlabelled augmentation, skipped)."""
    logits, labels = student.reshape(-1, student.shape[-1]).float(), labels.reshape(-1)
    if not bool((labels != IGNORE).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=IGNORE)


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    temperature: float,
    alpha: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """α · T² · KL(teacher_T ‖ student_T) + (1 − α) · CE(student, labels); logits (..., classes)."""
    loss = alpha * soft_target_loss(student, teacher, temperature, mask) if alpha > 0 else student.sum() * 0.0
    if alpha < 1 and labels is not None:
        loss = loss + (1 - alpha) * hard_label_loss(student, labels)
    return loss


def regression_distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor | None, *, alpha: float) -> torch.Tensor:
    """Regression heads have no distribution to soften: α · MSE(student, teacher) + (1 − α) · MSE(student, label)."""
    student, teacher = student.reshape(-1).float(), teacher.reshape(-1).float()
    loss = alpha * F.mse_loss(student, teacher)
    if alpha < 1 and labels is not None:
        labels = labels.reshape(-1).float()
        keep = labels != IGNORE
        if bool(keep.any()):
            loss = loss + (1 - alpha) * F.mse_loss(student[keep], labels[keep])
    return loss


def hidden_state_loss(
    student_states: list[torch.Tensor],
    teacher_states: list[torch.Tensor],
    attention_mask: torch.Tensor | None,
    projection: torch.nn.Module | None = None,
) -> torch.Tensor:
    """Mean over layer pairs of the MSE between (projected) student and teacher states at real tokens (TinyBERT)."""
    total = student_states[0].new_zeros((), dtype=torch.float32)
    for student, teacher in zip(student_states, teacher_states):
        if projection is not None:
            student = projection(student)
        error = (student.float() - teacher.float()).pow(2).mean(-1)
        if attention_mask is not None:
            weights = attention_mask.to(error.dtype)
            total = total + (error * weights).sum() / weights.sum().clamp(min=1)
        else:
            total = total + error.mean()
    return total / max(len(student_states), 1)
