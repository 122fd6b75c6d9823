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


def _mlm(seed: int = 0, rank: int = 0, processes: int = 1, batch: int = 4, **training) -> MaskedLanguageModelling:
    recipe = PretrainRecipe.model_validate(
        {"training": {"seed": seed, "per_device_train_batch_size": batch, "per_device_eval_batch_size": batch, **training},
         "data": {"whole_word_mask": False}}
    )
    return MaskedLanguageModelling(recipe, _Tokenizer(), SimpleNamespace(process_index=rank, num_processes=processes))


def _global_batch(rows: int = 8) -> dict:
    return {"input_ids": torch.randint(5, 100, (rows, 64), generator=torch.Generator().manual_seed(0))}


def test_mlm_masks_depend_only_on_seed_sample_position_and_stream():
    batch = {"input_ids": _global_batch()["input_ids"][:4]}
    first, again = _mlm().prepare(batch, 3), _mlm().prepare(batch, 3)
    assert torch.equal(first["input_ids"], again["input_ids"]) and torch.equal(first["labels"], again["labels"])
    # Another micro-batch, another process's share of the batch, another seed, evaluation: other masks.
    for other in (_mlm().prepare(batch, 4), _mlm(rank=1, processes=2).prepare(batch, 3), _mlm(seed=1).prepare(batch, 3),
                  _mlm().prepare(batch, 3, evaluation=True)):
        assert not torch.equal(first["labels"], other["labels"])
    targets = first["labels"] != -100
    assert torch.equal(first["labels"][targets], batch["input_ids"][targets])  # labels are the original tokens
    assert _mlm().count_targets(first) == int(targets.sum()) > 0


def _concat(parts: list[dict]) -> dict:
    return {key: torch.cat([part[key] for part in parts]) for key in ("input_ids", "labels")}


def test_mlm_masks_a_global_batch_alike_at_any_world_size_and_accumulation():
    """Micro-batch 5 of one process with 8 rows = micro-batch 5 of two processes with 4 rows each (Accelerate gives
    process r the r-th of every 2 batches of 4) = micro-batches 10 and 11 of one process with 4 rows (accumulation)."""
    batch = _global_batch()
    one = _mlm(batch=8).prepare(batch, 5)
    two = _concat([_mlm(rank=r, processes=2).prepare({"input_ids": batch["input_ids"][4 * r : 4 * r + 4]}, 5) for r in (0, 1)])
    accumulated = _concat([_mlm(batch=4).prepare({"input_ids": batch["input_ids"][4 * i : 4 * i + 4]}, 10 + i) for i in (0, 1)])
    for other in (two, accumulated):
        assert torch.equal(other["input_ids"], one["input_ids"]) and torch.equal(other["labels"], one["labels"])
    assert not torch.equal(one["labels"][:4], one["labels"][4:])  # rows of one batch are masked independently
    # Evaluation: the same rule with the evaluation batch size.
    one, two = _mlm(batch=8).prepare(batch, 1, evaluation=True), _concat(
        [_mlm(rank=r, processes=2).prepare({"input_ids": batch["input_ids"][4 * r : 4 * r + 4]}, 1, evaluation=True) for r in (0, 1)]
    )
    assert torch.equal(two["labels"], one["labels"])


def test_streamed_blocks_are_numbered_as_split_dataset_by_node_deals_them():
    """A stream is split by blocks (process r keeps blocks r, r + N, ...): a block keeps its masks at any world size."""
    from hftk.objectives.base import SampleSeeds

    one = SampleSeeds(seed=0, batch_size=8, eval_batch_size=8, streamed=True)
    two = [SampleSeeds(seed=0, batch_size=4, eval_batch_size=4, rank=r, num_processes=2, streamed=True) for r in (0, 1)]
    assert one.positions(3, 8) == list(range(24, 32))
    assert two[0].positions(3, 4) == [24, 26, 28, 30] and two[1].positions(3, 4) == [25, 27, 29, 31]
    assert two[1].positions(3, 4, evaluation=True) == [28, 29, 30, 31]  # evaluation data is map-style: sharded by batches


def test_clm_labels_are_the_inputs_and_every_position_but_the_last_is_a_target():
    batch = {"input_ids": torch.arange(12).view(2, 6)}
    prepared = CausalLanguageModelling().prepare(batch, 0)
    assert prepared["labels"] is batch["input_ids"]
    assert CausalLanguageModelling.count_targets(prepared) == 2 * 5
