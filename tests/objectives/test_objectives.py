"""The pretraining objectives prepare batches reproducibly and count the positions their loss averages over."""

from types import SimpleNamespace

import torch

from hftk.objectives import CausalLanguageModelling, MaskedLanguageModelling
from hftk.recipe import PretrainRecipe


class _Tokenizer:
    mask_token_id, pad_token_id = 4, 0
    all_special_ids = [0, 1, 2, 3, 4]

    def __len__(self) -> int:
        return 100


def _mlm(seed: int = 0, rank: int = 0) -> MaskedLanguageModelling:
    recipe = PretrainRecipe.model_validate({"training": {"seed": seed}, "data": {"whole_word_mask": False}})
    return MaskedLanguageModelling(recipe, _Tokenizer(), SimpleNamespace(process_index=rank))


def test_mlm_masks_depend_only_on_seed_batch_index_rank_and_stream():
    batch = {"input_ids": torch.randint(5, 100, (4, 64), generator=torch.Generator().manual_seed(0))}
    first, again = _mlm().prepare(batch, 3), _mlm().prepare(batch, 3)
    assert torch.equal(first["input_ids"], again["input_ids"]) and torch.equal(first["labels"], again["labels"])
    for other in (_mlm().prepare(batch, 4), _mlm(rank=1).prepare(batch, 3), _mlm().prepare(batch, 3, evaluation=True)):
        assert not torch.equal(first["labels"], other["labels"])
    targets = first["labels"] != -100
    assert torch.equal(first["labels"][targets], batch["input_ids"][targets])  # labels are the original tokens
    assert _mlm().count_targets(first) == int(targets.sum()) > 0


def test_clm_labels_are_the_inputs_and_every_position_but_the_last_is_a_target():
    batch = {"input_ids": torch.arange(12).view(2, 6)}
    prepared = CausalLanguageModelling().prepare(batch, 0)
    assert prepared["labels"] is batch["input_ids"]
    assert CausalLanguageModelling.count_targets(prepared) == 2 * 5
