"""General distillation in `hftk pretrain` (`distill.teacher`): a student LM learns from a teacher LM.

A masked-LM student learns from a masked-LM teacher, a causal-LM student from a causal-LM
teacher (DistilBERT's pretraining stage; MiniLM and TinyBERT's general distillation). Both see
the same inputs (the MLM objective's masked blocks, or the raw blocks for CLM), and the loss is
the convention of `hftk.distill.loss`, over the vocabulary at each predicted position:

    loss = α · T² · KL(softmax(teacher/T) ‖ softmax(student/T)) + (1 − α) · CE(student, tokens)
           + hidden_weight · MSE(projection(student states), teacher states)

Predicted positions are the masked ones for MLM (as DistilBERT) and every next token for CLM.
Neither side's full (batch, seq, vocab) logits are ever built: the models' bodies give hidden
states, only the predicted positions' rows reach the vocabulary heads, and those rows go through
the heads in chunks whose logits are recomputed in the backward pass (activation checkpointing),
so one chunk of logits is alive at a time. Hand-written because transformers and accelerate
ship no distillation loss (and their LM losses never see a teacher).

Teacher and student must share the tokenizer: the student is trained with the teacher's.
The student is the recipe's model (a fresh config or `model.name_or_path`) or the teacher's
layers `distill.student_layers` (`hftk.distill.student.select_layers`, DistilBERT's init).
In evaluation the wrapper is the student alone: `perplexity` is the student's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import AutoConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput, MaskedLMOutput

from hftk.distill.model import split_head
from hftk.errors import HftkError
from hftk.recipe import PretrainRecipe

IGNORE = -100
CHUNK_LOGITS = 2**23  # logits per chunk (32 MB in float32): rows = CHUNK_LOGITS // vocab


def _chunk_losses(
    student_rows: torch.Tensor,
    teacher_rows: torch.Tensor,
    targets: torch.Tensor,
    student_head: nn.Module,
    teacher_head: nn.Module,
    temperature: float,
    soft: bool,
    hard: bool,
) -> torch.Tensor:
    """[sum of cross-entropies, sum of KL(teacher_T ‖ student_T)] over the rows of one chunk."""
    logits = student_head(student_rows).float()
    ce = F.cross_entropy(logits, targets, reduction="sum") if hard else logits.new_zeros(())
    if not soft:
        return torch.stack([ce, logits.new_zeros(())])
    with torch.no_grad():
        teacher_log = F.log_softmax(teacher_head(teacher_rows).float() / temperature, dim=-1)
    kl = F.kl_div(F.log_softmax(logits / temperature, dim=-1), teacher_log, reduction="sum", log_target=True)
    return torch.stack([ce, kl])


def vocabulary_losses(
    student_rows: torch.Tensor,
    teacher_rows: torch.Tensor,
    targets: torch.Tensor,
    student_head: nn.Module,
    teacher_head: nn.Module,
    *,
    temperature: float,
    soft: bool = True,
    hard: bool = True,
    chunk_rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ CE(student, targets), Σ KL(teacher_T ‖ student_T)) over the rows, one chunk of logits at a time.

    `*_rows` are hidden states (rows, width) of the predicted positions; the heads map them to the
    vocabulary. With gradients on, each chunk is checkpointed: its logits are recomputed in backward.
    """
    if chunk_rows is None:
        vocab = student_head(student_rows[:1]).shape[-1] if student_rows.shape[0] else 1
        chunk_rows = max(16, CHUNK_LOGITS // vocab)
    total = student_rows.new_zeros(2, dtype=torch.float32)
    for start in range(0, student_rows.shape[0], chunk_rows):
        args = (
            student_rows[start : start + chunk_rows], teacher_rows[start : start + chunk_rows], targets[start : start + chunk_rows],
            student_head, teacher_head, temperature, soft, hard,
        )
        if torch.is_grad_enabled():
            total = total + checkpoint(_chunk_losses, *args, use_reentrant=False)
        else:
            total = total + _chunk_losses(*args)
    return total[0], total[1]


class PretrainDistillation(nn.Module):
    """The module `hftk pretrain` trains: student + loss; the teacher is held, never trained or saved.

    `projection` (hidden-state matching across widths) is trained with the student and checkpointed
    (register it with Accelerate), but not saved with the model: training machinery, as in TinyBERT.
    """

    def __init__(
        self,
        student: PreTrainedModel,
        teacher: PreTrainedModel,
        objective: str,
        *,
        temperature: float,
        alpha: float,
        hidden_weight: float = 0.0,
        layer_pairs: list[tuple[int, int]] | None = None,
        chunk_rows: int | None = None,
    ) -> None:
        super().__init__()
        self.student = student
        object.__setattr__(self, "_teacher", teacher.requires_grad_(False).eval())
        self.objective, self.temperature, self.alpha = objective, temperature, alpha
        self.hidden_weight, self.layer_pairs, self.chunk_rows = hidden_weight, layer_pairs or [], chunk_rows
        width_s, width_t = student.config.hidden_size, teacher.config.hidden_size
        self.projection = nn.Linear(width_s, width_t, bias=False) if hidden_weight > 0 and width_s != width_t else None

    @property
    def teacher(self) -> PreTrainedModel:
        return self._teacher

    @property
    def config(self):
        return self.student.config

    @property
    def supports_gradient_checkpointing(self) -> bool:
        return getattr(self.student, "supports_gradient_checkpointing", False)

    def activation_checkpointing_enable(self, **kwargs) -> None:
        self.student.activation_checkpointing_enable(**kwargs)

    def train(self, mode: bool = True) -> PretrainDistillation:
        super().train(mode)
        self._teacher.eval()  # no dropout in the targets
        return self

    def _states(self, model: PreTrainedModel, inputs: dict, hidden: bool) -> tuple[torch.Tensor, nn.Module, tuple | None]:
        """(last hidden states or full logits, head or identity, all hidden states if asked)."""
        split = split_head(model)
        extra = {"use_cache": False} if self.objective == "clm" else {}
        if split is None:
            out = model(**inputs, output_hidden_states=hidden, **extra)
            return out.logits, nn.Identity(), out.hidden_states
        body, head = split
        out = body(**inputs, output_hidden_states=hidden, **extra)
        return out.last_hidden_state, head, out.hidden_states

    def forward(self, **batch: Any):
        if not self.training:
            return self.student(**batch)
        batch.pop("sparse_prediction", None)
        num_items = batch.pop("num_items_in_batch", None)
        labels = batch.pop("labels")
        teacher = self._teacher
        if next(teacher.parameters()).device != labels.device:
            teacher.to(labels.device)
        need_hidden = self.hidden_weight > 0
        soft, hard = self.alpha > 0, self.alpha < 1
        student_states, student_head, student_hidden = self._states(self.student, batch, need_hidden)
        if soft or need_hidden:
            with torch.no_grad():
                teacher_states, teacher_head, teacher_hidden = self._states(teacher, batch, need_hidden)
        else:  # α = 0 without hidden states: plain MLM/CLM, the teacher is not run
            teacher_states, teacher_head, teacher_hidden = student_states.detach(), student_head, None
        if self.objective == "mlm":
            selected = labels != IGNORE
            targets = labels[selected]
            student_rows, teacher_rows = student_states[selected], teacher_states[selected]
        else:  # position t predicts token t + 1
            targets = labels[:, 1:].reshape(-1)
            width_s, width_t = student_states.shape[-1], teacher_states.shape[-1]
            student_rows = student_states[:, :-1].reshape(-1, width_s)
            teacher_rows = teacher_states[:, :-1].reshape(-1, width_t)
            keep = targets != IGNORE
            targets, student_rows, teacher_rows = targets[keep], student_rows[keep], teacher_rows[keep]
        ce, kl = vocabulary_losses(
            student_rows, teacher_rows, targets, student_head, teacher_head,
            temperature=self.temperature, soft=soft, hard=hard, chunk_rows=self.chunk_rows,
        )
        # Sums over this micro-batch's targets, divided by the step's global count (the loop's
        # num_items_in_batch), so accumulation and several processes give one large batch's mean.
        denominator = num_items if num_items is not None else max(int(targets.numel()), 1)
        loss = (self.alpha * self.temperature**2 * kl + (1 - self.alpha) * ce) / denominator
        if need_hidden:
            from hftk.distill.loss import hidden_state_loss

            pairs = self.layer_pairs
            mse = hidden_state_loss(
                [student_hidden[s] for s, _ in pairs], [teacher_hidden[t] for _, t in pairs], batch.get("attention_mask"), self.projection
            )
            loss = loss + self.hidden_weight * mse * (targets.numel() / denominator)  # a per-batch mean, weighted like its targets
        output = MaskedLMOutput if self.objective == "mlm" else CausalLMOutput
        return output(loss=loss)


def unwrap_student(model: nn.Module) -> nn.Module:
    """The student inside a `PretrainDistillation` (what is saved and shipped); any other model as is."""
    return model.student if isinstance(model, PretrainDistillation) else model


# --- set-up: teacher, tokenizer, student -------------------------------------------------------


def check_recipe(recipe: PretrainRecipe) -> None:
    """Recipe-level conflicts, before anything is loaded."""
    settings = recipe.distill
    if settings.teacher is None:
        if settings.student_layers:
            raise HftkError("distill.student_layers needs distill.teacher=FOLDER (the model whose layers the student copies)")
        return
    if settings.student_layers is not None:
        layers = settings.student_layers
        if not layers or any(i < 0 for i in layers) or list(layers) != sorted(set(layers)):
            raise HftkError(f"distill.student_layers must be increasing, distinct, non-negative layer indices (got {layers})")
        if recipe.model.config or recipe.model.name_or_path:
            raise HftkError(
                "the student is either the teacher's layers (distill.student_layers) or the recipe's model "
                "(model.config / model.name_or_path), not both: drop one (e.g. --set model.config={})"
            )


def load_teacher(recipe: PretrainRecipe):
    """(teacher LM, its tokenizer): one-line errors for a folder that cannot teach this objective."""
    from hftk.data.tokenizer import load_tokenizer
    from hftk.distill.teacher import is_decoder_only
    from hftk.objectives import AUTO_CLASS_BY_OBJECTIVE

    path, objective = recipe.distill.teacher, recipe.objective
    if not (Path(path) / "config.json").is_file():
        raise HftkError(
            f"distill.teacher {path} has no config.json: point it at a saved model folder (e.g. the output of `hftk pretrain`)"
        )
    config = AutoConfig.from_pretrained(path)
    kind = "causal" if objective == "clm" else "masked"
    if is_decoder_only(config) != (objective == "clm"):
        other = "a causal" if objective == "mlm" else "a masked"
        raise HftkError(
            f"distill.teacher {path} is {other} LM ({config.model_type}) but the objective is {objective}: "
            f"a {objective} student needs a {kind}-LM teacher (or set objective to match the teacher)"
        )
    auto_class = AUTO_CLASS_BY_OBJECTIVE[objective]
    try:
        teacher, info = auto_class.from_pretrained(path, output_loading_info=True, attn_implementation=recipe.model.attn_implementation)
    except (ValueError, OSError) as error:
        raise HftkError(f"distill.teacher {path} ({config.model_type}) has no {kind}-LM head: {str(error).splitlines()[0]}") from None
    tied = set(getattr(teacher, "_tied_weights_keys", None) or {})
    random = sorted(set(info["missing_keys"]) - tied)
    if random:
        raise HftkError(
            f"distill.teacher {path} has no trained {kind}-LM head ({', '.join(random[:3])} would be random): "
            f"use a model pretrained with objective {objective}"
        )
    try:
        tokenizer = load_tokenizer(path)
    except (OSError, ValueError, HftkError):
        raise HftkError(f"distill.teacher {path} has no tokenizer: the student trains with the teacher's, save it in the folder") from None
    return teacher, tokenizer


def same_vocabulary(a, b) -> bool:
    return a.get_vocab() == b.get_vocab()


def check_tokenizers(recipe: PretrainRecipe, teacher_tokenizer) -> None:
    """A tokenizer the recipe names (or a student folder brings) must be the teacher's."""
    from hftk.data.tokenizer import load_tokenizer

    for key, path in (("tokenizer.name_or_path", recipe.tokenizer.name_or_path), ("model.name_or_path", recipe.model.name_or_path)):
        if not path:
            continue
        try:
            other = load_tokenizer(path)
        except (OSError, ValueError, HftkError):
            continue  # a folder without a tokenizer: it gets the teacher's
        if not same_vocabulary(other, teacher_tokenizer):
            raise HftkError(
                f"teacher and student must share a tokenizer, but {key} {path} has another vocabulary than "
                f"distill.teacher {recipe.distill.teacher}: drop {key} or use a student with the teacher's tokenizer"
            )


def build_student(recipe: PretrainRecipe, teacher: PreTrainedModel, tokenizer, build_model) -> PreTrainedModel:
    """The teacher's layers `distill.student_layers`, or the recipe's model (`build_model(recipe, tokenizer)`)."""
    from hftk.distill.student import select_layers

    layers = recipe.distill.student_layers
    if layers:
        if recipe.data.max_seq_length > teacher.config.max_position_embeddings:
            raise HftkError(
                f"data.max_seq_length ({recipe.data.max_seq_length}) exceeds the teacher's max_position_embeddings "
                f"({teacher.config.max_position_embeddings}): lower data.max_seq_length"
            )
        student = select_layers(teacher, list(layers)).float()
    else:
        student = build_model(recipe, tokenizer)
    if student.config.vocab_size != teacher.config.vocab_size:
        raise HftkError(
            f"the student's vocabulary ({student.config.vocab_size}) is not the teacher's ({teacher.config.vocab_size}): "
            "soft targets need the same one; build the student from the teacher's tokenizer or its layers"
        )
    return student.train()


def wrap_student(recipe: PretrainRecipe, student: PreTrainedModel, teacher: PreTrainedModel, accelerator) -> PretrainDistillation:
    """The trained module; a width-changing projection is registered with Accelerate so resume restores it."""
    from hftk.distill.model import layer_map

    settings = recipe.distill
    pairs = None
    if settings.hidden_weight > 0:
        pairs = layer_map(student.config.num_hidden_layers, teacher.config.num_hidden_layers, settings.student_layers)
    model = PretrainDistillation(
        student, teacher.to(accelerator.device), recipe.objective,
        temperature=settings.temperature, alpha=settings.alpha, hidden_weight=settings.hidden_weight, layer_pairs=pairs,
    )
    if model.projection is not None:
        torch.manual_seed(recipe.training.seed)  # the same projection in a fresh and a resumed run
        model.projection.reset_parameters()
        accelerator.register_for_checkpointing(model.projection)
    return model
