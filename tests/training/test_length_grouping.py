"""`training.group_by_length`: batches of similar length, the same order on resume."""

from __future__ import annotations

import random

import pytest
import torch
from accelerate import Accelerator, DataLoaderConfiguration
from datasets import Dataset
from torch.utils.data import DataLoader

from hftk.errors import HftkError
from hftk.training.length_grouping import (
    EpochSeededLengthGroupedSampler,
    example_lengths,
)

BATCH = 8


def lengths(n: int = 400) -> list[int]:
    rng = random.Random(0)
    return [rng.randint(1, 128) for _ in range(n)]


def padded_positions(order: list[int], sizes: list[int]) -> int:
    """What a pad-to-longest collator adds over the whole epoch."""
    batches = [order[s : s + BATCH] for s in range(0, len(order), BATCH)]
    return sum(max(sizes[i] for i in b) * len(b) - sum(sizes[i] for i in b) for b in batches)


def test_grouped_epoch_is_a_permutation_with_far_less_padding_than_random():
    sizes = lengths()
    order = list(EpochSeededLengthGroupedSampler(BATCH, sizes, seed=1))
    assert sorted(order) == list(range(len(sizes)))
    shuffled = torch.randperm(len(sizes), generator=torch.Generator().manual_seed(1)).tolist()
    # Uniform lengths 1..128 in random batches of 8 pad ~40 % of the positions; grouped, a few %.
    assert padded_positions(order, sizes) < padded_positions(shuffled, sizes) / 5


def test_order_depends_only_on_seed_and_epoch():
    sizes = lengths()
    running = EpochSeededLengthGroupedSampler(BATCH, sizes, seed=3)
    first, second = list(running), None
    running.set_epoch(1)
    second = list(running)
    fresh = EpochSeededLengthGroupedSampler(BATCH, sizes, seed=3)
    fresh.set_epoch(1)
    assert list(fresh) == second != first
    fresh.set_epoch(0)
    assert list(fresh) == first
    assert list(EpochSeededLengthGroupedSampler(BATCH, sizes, seed=4)) != first


def test_accelerate_resume_mid_epoch_sees_the_batches_an_uninterrupted_run_sees():
    """Accelerate calls set_epoch on the sampler; skip_first_batches then resumes inside the epoch."""
    sizes = lengths(96)
    data = [{"n": i} for i in range(len(sizes))]

    def loader():
        accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
        sampler = EpochSeededLengthGroupedSampler(BATCH, sizes, seed=7)
        collate = lambda rows: [r["n"] for r in rows]
        return accelerator, accelerator.prepare(DataLoader(data, batch_size=BATCH, sampler=sampler, collate_fn=collate))

    accelerator, uninterrupted = loader()
    epochs = []
    for epoch in range(2):
        uninterrupted.set_epoch(epoch)
        epochs.append(list(uninterrupted))
    accelerator, resumed = loader()
    resumed.set_epoch(1)
    assert list(accelerator.skip_first_batches(resumed, 5)) == epochs[1][5:]
    assert epochs[0] != epochs[1]


def test_example_lengths_reads_input_ids_and_refuses_untokenised_data():
    assert example_lengths(Dataset.from_dict({"input_ids": [[1, 2, 3], [4]], "labels": [0, 1]})) == [3, 1]
    with pytest.raises(HftkError, match="group_by_length: false"):
        example_lengths(Dataset.from_dict({"text": ["a", "b"]}))
