"""Pretraining objectives: what `hftk pretrain` turns a batch of packed blocks into, and which model learns it.

One module per objective. Each objective object has
- `prepare(batch, index, evaluation=False) -> dict`: the model's keyword arguments for one batch
  (`index`, the micro-batch counter, places each row in the run's sequence of samples, whose
  position seeds the row's randomness: `base.SampleSeeds`; so a resumed run, and N processes of
  the same global batch, see the masks of an uninterrupted single-process run);
- `count_targets(batch) -> int`: how many positions the loss averages over (for token-weighted
  evaluation losses across batches and processes);
- the hooks of `hftk.objectives.base.Objective` (what is trained, saved, loaded and evaluated),
  which ELECTRA overrides to train a generator beside the model it saves.
`AUTO_CLASS_BY_OBJECTIVE` names the Auto class a recipe's objective builds its (saved) model with.
"""

from __future__ import annotations

from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForPreTraining, AutoModelForSeq2SeqLM

from hftk.objectives.base import Objective
from hftk.objectives.clm import CausalLanguageModelling
from hftk.objectives.denoise import Denoising
from hftk.objectives.mlm import MaskedLanguageModelling

# electra: the saved model is the discriminator, hftk_bert's `HftkBertForPreTraining`.
AUTO_CLASS_BY_OBJECTIVE = {
    "mlm": AutoModelForMaskedLM,
    "clm": AutoModelForCausalLM,
    "electra": AutoModelForPreTraining,
    "denoise": AutoModelForSeq2SeqLM,
}


def make_objective(recipe, tokenizer, accelerator, model):
    """The recipe's objective, ready to prepare batches for `model`."""
    if recipe.objective == "electra":
        from hftk.objectives.electra import ReplacedTokenDetection

        return ReplacedTokenDetection(recipe, tokenizer, accelerator)
    if recipe.objective == "mlm":
        return MaskedLanguageModelling(recipe, tokenizer, accelerator, sparse=model.config.model_type == "hftk_bert")
    if recipe.objective == "denoise":
        return Denoising(recipe, tokenizer, accelerator)
    return CausalLanguageModelling()


__all__ = ["AUTO_CLASS_BY_OBJECTIVE", "CausalLanguageModelling", "Denoising", "MaskedLanguageModelling", "Objective", "make_objective"]
