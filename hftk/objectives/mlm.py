"""Masked language modelling (BERT): predict 15 % of the tokens, masked 80/10/10, from both sides."""

from __future__ import annotations

import torch
from accelerate import Accelerator

from hftk.data.masking import mask_tokens
from hftk.data.tokenizer import continuation_mask
from hftk.errors import HftkError
from hftk.objectives.base import Objective, SampleSeeds
from hftk.recipe import PretrainRecipe


class MaskedLanguageModelling(Objective):
    """Dynamic masking, reproducible: each sample's masks come from (seed, its position in the run), see `SampleSeeds`.

    So one process and N processes of the same global batch mask it alike, and a resumed run masks
    as the uninterrupted one; a sample seen again in a later epoch gets new masks (its position differs).

    `sparse`: ask an hftk encoder for sparse prediction (the vocabulary decoder on masked
    positions only) in training and evaluation alike; its logits are never looked at here.
    """

    # BERT's 80/10/10: of the selected tokens, 80 % become [MASK], 10 % a random token.
    mask_replace_prob, random_replace_prob = 0.8, 0.1

    def __init__(self, recipe: PretrainRecipe, tokenizer, accelerator: Accelerator, sparse: bool = False) -> None:
        self.sparse = sparse
        self.probability = recipe.data.mlm_probability
        self.seeds = SampleSeeds.for_run(recipe, accelerator)
        self.mask_token_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.special_token_ids = tokenizer.all_special_ids
        self.continuation = continuation_mask(tokenizer) if recipe.data.whole_word_mask else None
        if self.mask_token_id is None:
            raise HftkError("the tokenizer has no mask token: MLM needs one (use a WordPiece tokenizer)")

    def prepare(self, batch: dict, index: int, evaluation: bool = False) -> dict:
        input_ids = batch["input_ids"]
        return self.mask(input_ids, self.seeds.generators(index, len(input_ids), evaluation))

    def mask(self, input_ids: torch.Tensor, generators: list[torch.Generator]) -> dict:
        """The model's inputs and labels, each row masked with its own generator."""
        masked, labels = mask_tokens(
            input_ids.cpu(),
            probability=self.probability,
            mask_token_id=self.mask_token_id,
            vocab_size=self.vocab_size,
            special_token_ids=self.special_token_ids,
            generator=generators,
            continuation=self.continuation,
            mask_replace_prob=self.mask_replace_prob,
            random_replace_prob=self.random_replace_prob,
        )
        prepared = {"input_ids": masked.to(input_ids.device), "labels": labels.to(input_ids.device)}
        return {**prepared, "sparse_prediction": True} if self.sparse else prepared

    @staticmethod
    def count_targets(batch: dict) -> int:
        return int((batch["labels"] != -100).sum())
