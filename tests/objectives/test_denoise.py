"""Denoising (BART text infilling, T5 span corruption): exact noise amounts, invertibility, reproducibility."""

from types import SimpleNamespace

import pytest
import torch

from hftk.objectives import Denoising
from hftk.objectives.denoise import corruption_spans, infilling_spans
from hftk.recipe import PretrainRecipe

MASK, PAD = 4, 0
SENTINELS = list(range(5, 105))  # <extra_id_0..99> as the seq2seq tokenizer numbers them


class _Tokenizer:
    pad_token_id, mask_token_id = PAD, MASK

    def get_vocab(self) -> dict[str, int]:
        return {**{f"<extra_id_{i}>": t for i, t in enumerate(SENTINELS)}, "<pad>": PAD, "<mask>": MASK}


def _denoise(method: str, seed: int = 0, rank: int = 0, processes: int = 1, batch: int = 4) -> Denoising:
    recipe = PretrainRecipe.model_validate(
        {"objective": "denoise", "training": {"seed": seed, "per_device_train_batch_size": batch}, "data": {"denoising": method}}
    )
    return Denoising(recipe, _Tokenizer(), SimpleNamespace(process_index=rank, num_processes=processes))


def _blocks(rows: int = 4, length: int = 64) -> dict:
    return {"input_ids": torch.randint(200, 1000, (rows, length), generator=torch.Generator().manual_seed(0))}


@pytest.mark.parametrize("method", ["text_infilling", "span_corruption"])
def test_noise_depends_only_on_seed_sample_position_and_stream(method):
    batch = _blocks()
    first, again = _denoise(method).prepare(batch, 3), _denoise(method).prepare(batch, 3)
    assert all(torch.equal(first[k], again[k]) for k in ("input_ids", "attention_mask", "labels"))
    for other in (_denoise(method).prepare(batch, 4), _denoise(method, rank=1, processes=2).prepare(batch, 3),
                  _denoise(method, seed=1).prepare(batch, 3), _denoise(method).prepare(batch, 3, evaluation=True)):
        assert not torch.equal(first["input_ids"], other["input_ids"])
    assert _denoise(method).count_targets(first) == int((first["labels"] != -100).sum())


def _rows(prepared: dict) -> list[tuple[list[int], list[int]]]:
    """Each row's encoder input and decoder target without padding (a batch pads to its own longest row)."""
    sources = [row[mask.bool()].tolist() for row, mask in zip(prepared["input_ids"], prepared["attention_mask"])]
    return list(zip(sources, [row[row != -100].tolist() for row in prepared["labels"]]))


@pytest.mark.parametrize("method", ["text_infilling", "span_corruption"])
def test_a_global_batch_is_corrupted_alike_at_any_world_size(method):
    batch = _blocks(rows=8)
    one = _rows(_denoise(method, batch=8).prepare(batch, 5))
    two = [row for r in (0, 1) for row in _rows(_denoise(method, rank=r, processes=2).prepare({"input_ids": batch["input_ids"][4 * r : 4 * r + 4]}, 5))]
    assert two == one and one[0] != one[4]


def test_text_infilling_masks_30_percent_one_mask_per_span_and_targets_the_original():
    batch = _blocks(rows=8, length=100)
    prepared = _denoise("text_infilling").prepare(batch, 0)
    assert torch.equal(prepared["labels"], batch["input_ids"])  # the decoder rewrites the whole block
    generators = _denoise("text_infilling").seeds.generators(0, 8)  # one per row
    rows = zip(batch["input_ids"].tolist(), prepared["input_ids"].tolist(), prepared["attention_mask"].tolist(), generators)
    for row, source, mask, generator in rows:
        spans = infilling_spans(100, 0.3, 3.0, generator)  # the same draws, in the same order
        assert sum(length for _, length in spans) == 30
        kept = [t for i, t in enumerate(row) if not any(s <= i < s + n for s, n in spans)]
        source = source[: sum(mask)]
        assert [t for t in source if t != MASK] == kept and source.count(MASK) == len(spans)


def test_infilling_span_lengths_are_poisson_3():
    generator = torch.Generator().manual_seed(0)
    lengths = [n for _ in range(300) for _, n in infilling_spans(512, 0.3, 3.0, generator)[:-1]]  # last one is cut to fit
    assert len(lengths) > 10_000
    mean = sum(lengths) / len(lengths)
    assert abs(mean - 3.0) < 0.06  # standard error sqrt(3 / 15000) = 0.014
    assert abs(lengths.count(0) / len(lengths) - torch.tensor(-3.0).exp().item()) < 0.01  # P(0) = e^-3: insertions


def test_span_corruption_round_trips_and_corrupts_15_percent():
    batch = _blocks(rows=8, length=100)
    prepared = _denoise("span_corruption").prepare(batch, 0)
    for row, source, mask, target in zip(batch["input_ids"].tolist(), prepared["input_ids"].tolist(),
                                         prepared["attention_mask"].tolist(), prepared["labels"].tolist()):
        source, target = source[: sum(mask)], [t for t in target if t != -100]
        spans = {}  # sentinel -> the tokens the target gives it
        for token in target:
            if token in SENTINELS:
                current = spans.setdefault(token, [])
            else:
                current.append(token)
        rebuilt = [t for s in source for t in (spans[s] if s in SENTINELS else [s])]
        assert rebuilt == row
        assert sum(len(v) for v in spans.values()) == 15 and target[0] == SENTINELS[0]
        assert len(spans) == 5 + 1  # round(15 / 3) spans and the closing sentinel


def test_span_corruption_never_needs_more_sentinels_than_it_has():
    spans = corruption_spans(4096, 0.15, 3.0, max_spans=99, generator=torch.Generator().manual_seed(0))
    assert len(spans) == 99 and sum(n for _, n in spans) == round(4096 * 0.15)
