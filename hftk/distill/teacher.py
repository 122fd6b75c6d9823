"""The teacher: load it with the task's head, refuse teachers that cannot teach, cache its outputs.

The teacher runs once over the training features (and the augmentation rows) before training,
and its logits become columns of the training set: every epoch then reads them instead of
running the teacher again (DistilBERT and TinyBERT's task stage do the same for fixed inputs).
"""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import torch
import transformers
from torch.utils.data import DataLoader
from transformers import PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

from hftk.errors import HftkError
from hftk.models.loading import quiet_load_report
from hftk.recipe.tasks import AUTO_MODEL_CLASSES, TASKS

# The columns a teacher adds to training features, by head kind.
TEACHER_COLUMNS = {
    "sequence_classification": ("teacher_logits",),
    "token_classification": ("teacher_logits",),
    "question_answering": ("teacher_start_logits", "teacher_end_logits"),
}


def is_decoder_only(config) -> bool:
    """A causal LM family with no masked-LM (bidirectional) variant: GPT-2, hftk_gpt, Llama..."""
    model_type = config.model_type
    return model_type == "hftk_gpt" or (model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES)


def load_teacher(path: str, task: str, attn_implementation: str = "sdpa") -> PreTrainedModel:
    """The teacher with its trained head for `task`; one-line errors for teachers that do not fit."""
    if not path:
        raise HftkError(f"no teacher: pass --teacher FOLDER (a model fine-tuned with `hftk finetune {task}`)")
    if not (Path(path) / "config.json").is_file():
        raise HftkError(f"teacher folder {path} has no config.json: point --teacher at a saved model folder")
    kind = TASKS[task].kind
    config = transformers.AutoConfig.from_pretrained(path)
    if kind != "sequence_classification" and is_decoder_only(config):
        raise HftkError(
            f"teacher {path} is a decoder-only {config.model_type} model: {task} needs a bidirectional encoder "
            "teacher (e.g. a BERT fine-tuned with `hftk finetune " + task + "`)"
        )
    auto_class = getattr(transformers, AUTO_MODEL_CLASSES[kind])
    try:
        with quiet_load_report():  # a teacher without its head is refused below in one line
            model, info = auto_class.from_pretrained(path, output_loading_info=True, attn_implementation=attn_implementation)
    except ValueError as error:
        raise HftkError(
            f"teacher {path} ({config.model_type}) has no {AUTO_MODEL_CLASSES[kind]} head: it cannot teach {task}; "
            f"use a model fine-tuned with `hftk finetune {task}`"
        ) from error
    random = sorted({key.rsplit(".", 1)[0] for key in info["missing_keys"]})
    if random:
        raise HftkError(
            f"teacher {path} has no trained {task} head ({', '.join(random)} would be random): "
            f"fine-tune it first with `hftk finetune {task} --model {path}`"
        )
    model.requires_grad_(False)
    return model.eval()


def teacher_labels(teacher: PreTrainedModel, kind: str) -> list[str] | None:
    """The teacher's label names by id (None for regression and QA)."""
    config = teacher.config
    if kind == "question_answering" or config.problem_type == "regression" or config.num_labels == 1:
        return None
    return [config.id2label[i] for i in range(config.num_labels)]


@torch.no_grad()
def cache_teacher_outputs(
    teacher: PreTrainedModel, features: datasets.Dataset, collator, kind: str, batch_size: int
) -> dict[str, list]:
    """One teacher pass over `features` (model inputs only): the teacher columns, one entry per row.

    Token-level outputs are cut to each row's own length so the collator can pad them like the inputs.
    """
    inputs = features.select_columns([c for c in ("input_ids", "attention_mask", "token_type_ids") if c in features.column_names])
    loader = DataLoader(inputs, batch_size=batch_size, collate_fn=collator)
    device = next(teacher.parameters()).device
    columns: dict[str, list] = {name: [] for name in TEACHER_COLUMNS[kind]}
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        out = teacher(**batch)
        lengths = batch["attention_mask"].sum(-1).tolist() if "attention_mask" in batch else None
        if kind == "sequence_classification":
            columns["teacher_logits"].extend(out.logits.float().cpu().numpy().tolist())
        elif kind == "token_classification":
            logits = out.logits.float().cpu().numpy()
            columns["teacher_logits"].extend(_trim(logits, lengths, batch))
        else:
            columns["teacher_start_logits"].extend(out.start_logits.float().cpu().numpy().tolist())
            columns["teacher_end_logits"].extend(out.end_logits.float().cpu().numpy().tolist())
    return columns


def _trim(logits: np.ndarray, lengths: list[int] | None, batch: dict) -> list:
    """Per-row token logits without the batch padding (right-padded by the task collators)."""
    if lengths is None:
        return logits.tolist()
    return [row[: int(n)].tolist() for row, n in zip(logits, lengths)]
