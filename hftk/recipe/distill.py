"""The `hftk distill TASK` recipe: a fine-tuning recipe plus a teacher, a student and the loss mix.

Everything `hftk finetune TASK` reads (data, training, output) means the same here; `model`
only carries loading options (`model.config`, `model.attn_implementation`) for the student.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import Field, field_validator, model_validator

from hftk.recipe.schema import FinetuneDataSection, FinetuneRecipe, OutputSection, Section, _as_list
from hftk.recipe.tasks import DistillTaskName


class TeacherSection(Section):
    name_or_path: str | None = Field(None, description="a model folder fine-tuned on this task (`hftk finetune TASK`)")
    batch_size: int = Field(64, ge=1, description="batch size of the one pass that caches the teacher's logits")


class StudentSection(Section):
    """Exactly one source: `layers` (init from the teacher), `name_or_path` (a folder) or `config` (fresh hftk_bert)."""

    name_or_path: str | None = Field(None, description="an hftk or transformers model folder")
    layers: list[int] | None = Field(None, description="teacher layers the student keeps, e.g. [0, 2, 4]")
    config: dict[str, Any] = Field(default_factory=dict, description="hftk_bert config fields of a fresh student")

    @model_validator(mode="after")
    def _one_source(self) -> StudentSection:
        sources = [name for name, used in (("name_or_path", self.name_or_path), ("layers", self.layers), ("config", self.config)) if used]
        if len(sources) > 1:
            raise ValueError(f"give one student source, got student.{' and student.'.join(sources)}")
        if self.layers is not None:
            if not self.layers or any(i < 0 for i in self.layers) or list(self.layers) != sorted(set(self.layers)):
                raise ValueError(f"student.layers must be increasing, distinct, non-negative layer indices (got {self.layers})")
        if self.config:
            from hftk.models import HftkBertConfig

            known = {f.name for f in dataclasses.fields(HftkBertConfig)}
            unknown = sorted(set(self.config) - known)
            if unknown:
                raise ValueError(f"unknown key(s) student.config.{', student.config.'.join(unknown)} for hftk_bert")
        return self


class DistillSection(Section):
    temperature: float = Field(2.0, gt=0, description="T: softens both distributions; the soft loss is scaled by T²")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the soft-target loss; 1 − alpha weights the hard labels")
    hidden_weight: float = Field(0.0, ge=0, description="weight of the hidden-state MSE (needs a shared tokenizer)")


class AugmentSection(Section):
    """TinyBERT's augmentation: perturbed copies of the training texts, labelled by the teacher (classification)."""

    copies: int = Field(0, ge=0, description="perturbed copies of each training text (TinyBERT: 20); 0 = off")
    replace_probability: float = Field(0.4, gt=0, le=1, description="chance that each whole word is replaced (TinyBERT: 0.4)")
    top_k: int = Field(15, ge=1, description="replacements are drawn from the masked LM's top k words (TinyBERT: 15)")
    mlm: str | None = Field(None, description="masked-LM folder proposing the words (default: the teacher, if it has an MLM head)")
    batch_size: int = Field(32, ge=1, description="batch size of the masked LM's passes")


class DistillDataSection(FinetuneDataSection):
    unlabeled_files: list[str] = Field(default_factory=list, description="extra texts the teacher labels (classification)")

    _lists = field_validator("unlabeled_files", mode="before")(_as_list)


class DistillRecipe(FinetuneRecipe):
    """`hftk distill TASK`: a fine-tuning recipe with teacher, student and distillation settings."""

    task: DistillTaskName = Field(description="the task: glue, classification, qa or ner (the command's TASK argument)")
    data: DistillDataSection = Field(default_factory=DistillDataSection)
    teacher: TeacherSection = Field(default_factory=TeacherSection)
    student: StudentSection = Field(default_factory=StudentSection)
    distill: DistillSection = Field(default_factory=DistillSection)
    augment: AugmentSection = Field(default_factory=AugmentSection)
    output: OutputSection = Field(default_factory=lambda: OutputSection(output_dir="runs/distill"))
