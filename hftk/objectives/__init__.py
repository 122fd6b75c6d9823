"""Pretraining objectives: what `hftk pretrain` turns a batch of packed blocks into, and which model learns it.

One module per objective. Each objective object has
- `prepare(batch, index, evaluation=False) -> dict`: the model's keyword arguments for one batch
  (`index` seeds any randomness, so a resumed run sees the same masks as an uninterrupted one);
- `count_targets(batch) -> int`: how many positions the loss averages over (for token-weighted
  evaluation losses across batches and processes).
`AUTO_CLASSES` names the Auto class a recipe's objective builds its model with.
"""

from __future__ import annotations

from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM

from hftk.objectives.clm import CausalLanguageModelling
from hftk.objectives.denoise import Denoising
from hftk.objectives.mlm import MaskedLanguageModelling

AUTO_CLASSES = {"mlm": AutoModelForMaskedLM, "clm": AutoModelForCausalLM, "denoise": AutoModelForSeq2SeqLM}


def make_objective(recipe, tokenizer, accelerator, model):
    """The recipe's objective, ready to prepare batches for `model`."""
    if recipe.objective == "mlm":
        return MaskedLanguageModelling(recipe, tokenizer, accelerator, sparse=model.config.model_type == "hftk_bert")
    if recipe.objective == "denoise":
        return Denoising(recipe, tokenizer, accelerator)
    return CausalLanguageModelling()


__all__ = ["AUTO_CLASSES", "CausalLanguageModelling", "Denoising", "MaskedLanguageModelling", "make_objective"]
