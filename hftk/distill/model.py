"""The module the shared training loop trains: the student, its distillation loss, and a collator.

`DistillationModel(**batch)` returns the student's own output with `loss` replaced by the
distillation loss whenever the batch carries the cached teacher columns (training); without
them (evaluation) it is the student unchanged. Only the student is saved; the projection
for hidden-state matching is training machinery and is thrown away, as in TinyBERT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from hftk.distill.loss import MASKED, distillation_loss, hidden_state_loss, regression_distillation_loss

if TYPE_CHECKING:
    from transformers import PreTrainedModel

TEACHER_KEYS = ("teacher_logits", "teacher_start_logits", "teacher_end_logits")


def layer_map(student_layers: int, teacher_layers: int, selected: list[int] | None) -> list[tuple[int, int]]:
    """(student, teacher) indices into `hidden_states` (0 = embeddings) whose states are matched.

    A layer-selected student matches each block with the teacher block it was copied from;
    any other student matches block k with teacher block round(k · teacher / student) (TinyBERT's uniform map).
    """
    if selected is not None:
        return [(0, 0)] + [(k + 1, layer + 1) for k, layer in enumerate(selected)]
    return [(k, round(k * teacher_layers / student_layers)) for k in range(student_layers + 1)]


class DistillationModel(nn.Module):
    """Student + loss. The teacher is only held (not registered: never trained, saved or checkpointed)
    when hidden states are matched, since those are not cached."""

    def __init__(
        self,
        student: nn.Module,
        kind: str,
        *,
        temperature: float,
        alpha: float,
        regression: bool = False,
        hidden_weight: float = 0.0,
        teacher: nn.Module | None = None,
        layer_pairs: list[tuple[int, int]] | None = None,
    ) -> None:
        super().__init__()
        self.student = student
        self.kind, self.temperature, self.alpha, self.regression = kind, temperature, alpha, regression
        self.hidden_weight = hidden_weight
        self.layer_pairs = layer_pairs or []
        object.__setattr__(self, "_teacher", teacher)
        self.projection: nn.Module | None = None
        if hidden_weight > 0:
            if teacher is None:
                raise ValueError("hidden-state distillation needs the teacher")
            width_s, width_t = student.config.hidden_size, teacher.config.hidden_size
            self.projection = nn.Linear(width_s, width_t, bias=False) if width_s != width_t else None

    @property
    def config(self):
        return self.student.config

    def forward(self, **batch: Any):
        batch.pop("num_items_in_batch", None)
        cached = {key: batch.pop(key) for key in TEACHER_KEYS if key in batch}
        if not cached:
            return self.student(**batch)
        targets = {key: batch.pop(key) for key in ("labels", "start_positions", "end_positions") if key in batch}
        need_hidden = self.hidden_weight > 0
        out = self.student(**batch, output_hidden_states=need_hidden) if need_hidden else self.student(**batch)
        loss = self._soft_loss(out, cached, targets, batch.get("attention_mask"))
        if need_hidden:
            loss = loss + self.hidden_weight * self._hidden_loss(out, batch)
        out.loss = loss
        return out

    def _soft_loss(self, out, cached: dict, targets: dict, attention_mask: torch.Tensor | None) -> torch.Tensor:
        settings = dict(temperature=self.temperature, alpha=self.alpha)
        if self.kind == "sequence_classification":
            if self.regression:
                return regression_distillation_loss(out.logits, cached["teacher_logits"], targets.get("labels"), alpha=self.alpha)
            return distillation_loss(out.logits, cached["teacher_logits"], targets.get("labels"), **settings)
        if self.kind == "token_classification":
            labels = targets.get("labels")
            mask = labels != -100 if labels is not None else attention_mask
            return distillation_loss(out.logits, cached["teacher_logits"], labels, mask=mask, **settings)
        # Extractive QA: a distribution over token positions for the start and for the end.
        losses = []
        for side in ("start", "end"):
            student, teacher = getattr(out, f"{side}_logits"), cached[f"teacher_{side}_logits"]
            if attention_mask is not None:
                padding = attention_mask == 0
                student, teacher = student.masked_fill(padding, MASKED), teacher.masked_fill(padding, MASKED)
            losses.append(distillation_loss(student, teacher, targets.get(f"{side}_positions"), **settings))
        return (losses[0] + losses[1]) / 2

    def _hidden_loss(self, out, batch: dict) -> torch.Tensor:
        teacher = self._teacher
        device = batch["input_ids"].device
        if next(teacher.parameters()).device != device:
            teacher.to(device)
        with torch.no_grad():
            teacher_states = teacher(**batch, output_hidden_states=True).hidden_states
        pairs = self.layer_pairs
        return hidden_state_loss(
            [out.hidden_states[s] for s, _ in pairs], [teacher_states[t] for _, t in pairs], batch.get("attention_mask"), self.projection
        )


class DistillationCollator:
    """The task's collator for the model inputs; cached teacher columns padded to the batch's length."""

    def __init__(self, base, padding_side: str = "right") -> None:
        self.base, self.padding_side = base, padding_side

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        keys = [key for key in TEACHER_KEYS if key in features[0]]
        extras = {key: [feature.pop(key) for feature in features] for key in keys}
        batch = self.base(features)
        for key, rows in extras.items():
            tensors = [torch.as_tensor(row, dtype=torch.float32) for row in rows]
            if tensors[0].ndim == 1 and key == "teacher_logits":  # one vector per sequence
                batch[key] = torch.stack(tensors)
                continue
            length = batch["input_ids"].shape[1]
            fill = MASKED if key != "teacher_logits" else 0.0
            padded = torch.full((len(tensors), length, *tensors[0].shape[1:]), fill)
            for i, row in enumerate(tensors):
                n = min(len(row), length)
                if self.padding_side == "left":
                    padded[i, length - n :] = row[len(row) - n :]
                else:
                    padded[i, :n] = row[:n]
            batch[key] = padded
        return batch


def split_head(model: PreTrainedModel) -> tuple[nn.Module, nn.Module] | None:
    """(body, vocabulary head) of an LM whose head is its one other child (hftk, BERT, RoBERTa, GPT-2, Llama).

    None when the head is spread over several modules (e.g. DistilBERT): the full logits are used then.
    """
    body = model.base_model
    if body is model:
        return None
    heads = [child for child in model.children() if child is not body and any(True for _ in child.parameters())]
    return (body, heads[0]) if len(heads) == 1 else None
