"""mask_tokens: BERT's 15% / 80-10-10 rule, whole-word masking, specials, determinism.

Statistical bounds are about 5 standard deviations wide: a correct implementation fails them with
probability < 1e-6 (and the seeds are fixed anyway), while the usual mistakes (masking 80% of 15%
as the rate, 10% random of the remainder instead of overall, masking specials) miss them by 10+ sigma.
"""

from __future__ import annotations

import math

import pytest
import torch

from hftk.data.masking import mask_tokens
from hftk.errors import HftkError

V, PAD, CLS, SEP, MASK = 1000, 0, 2, 3, 4
SPECIALS = [PAD, CLS, SEP, MASK]
CONTINUATION = torch.arange(V) >= 500  # ids 500..999 continue a word (like ##x); 5..499 start one


def make_batch(rows: int = 256, length: int = 128, seed: int = 0) -> torch.LongTensor:
    """Random ids with [CLS] ... [SEP] framing, a few [SEP] document breaks, and padded tails."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (rows, length), generator=g)
    ids[:, 0], ids[:, -1] = CLS, SEP
    ids[torch.rand(rows, length, generator=g) < 0.02] = SEP
    for row in range(0, rows, 8):
        ids[row, length - 10 :] = PAD
    return ids


def call(ids, seed=1, **kwargs):
    options = dict(probability=0.15, mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIALS)
    options.update(kwargs)
    return mask_tokens(ids, generator=torch.Generator().manual_seed(seed), **options)


def within(observed: float, expected: float, n: int, sigmas: float = 5.0) -> bool:
    return abs(observed - expected) <= sigmas * math.sqrt(expected * (1 - expected) / n)


@pytest.mark.parametrize("continuation", [None, CONTINUATION])
def test_rate_split_labels_and_specials(continuation):
    ids = make_batch()
    original = ids.clone()
    masked, labels = call(ids, continuation=continuation)
    assert torch.equal(ids, original)  # input untouched
    assert masked.shape == labels.shape == ids.shape and masked.dtype == labels.dtype == torch.int64
    special = torch.isin(ids, torch.tensor(SPECIALS))
    selected = labels != -100
    # Labels are the originals exactly where selected, -100 elsewhere; unselected inputs are unchanged.
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(masked[~selected], ids[~selected])
    assert not selected[special].any()
    n = int((~special).sum())
    rate = selected.sum().item() / n
    if continuation is None:
        assert within(rate, 0.15, n), rate
    else:
        # Words are drawn as units: the token rate is still 0.15 on average, with word-sized clumps.
        assert abs(rate - 0.15) < 0.02, rate
    k = int(selected.sum())
    to_mask = (masked == MASK) & selected
    to_random = selected & (masked != MASK) & (masked != ids)
    unchanged = selected & (masked == ids)
    assert within(to_mask.sum().item() / k, 0.8, k)
    # A random draw can hit the original id or [MASK] (1/V each): those read as unchanged / masked.
    assert within(to_random.sum().item() / k, 0.1 * (1 - 2 / V), k)
    assert within(unchanged.sum().item() / k, 0.1 + 0.1 / V, k)
    assert masked[to_random].min() >= 0 and masked[to_random].max() < V


def test_whole_words_are_all_or_nothing():
    ids = make_batch(seed=3)
    masked, labels = call(ids, seed=4, continuation=CONTINUATION)
    selected = labels != -100
    special = torch.isin(ids, torch.tensor(SPECIALS))
    # Reference word segmentation with a plain loop: a word is a start token plus the continuations after it.
    n_words = n_selected_words = 0
    for row in range(ids.shape[0]):
        word: list[int] = []
        words = []
        for position, token in enumerate(ids[row].tolist()):
            if token in SPECIALS:
                words.append(word)
                word = []
            elif CONTINUATION[token] and word:
                word.append(position)
            else:
                words.append(word)
                word = [position]
        words.append(word)
        for positions in filter(None, words):
            states = selected[row, positions]
            assert states.all() or not states.any(), (row, positions, states)
            n_words += 1
            n_selected_words += bool(states[0])
    assert within(n_selected_words / n_words, 0.15, n_words)
    assert not selected[special].any()
    # Multi-token words exist and some are selected, so the all-or-nothing check above had teeth.
    assert (selected[:, 1:] & selected[:, :-1] & CONTINUATION[ids[:, 1:]]).sum() > 100


def test_continuation_right_after_a_special_starts_a_word():
    # [CLS] then continuation ids only: each row is one 6-token word that must be selectable.
    ids = torch.full((4000, 8), 700)
    ids[:, 0], ids[:, -1] = CLS, SEP
    _, labels = call(ids, seed=5, continuation=CONTINUATION)
    selected = labels != -100
    rows = selected[:, 1:-1]
    assert (rows.all(dim=1) | ~rows.any(dim=1)).all()
    assert within(rows.all(dim=1).float().mean().item(), 0.15, 4000)


def test_deterministic_under_the_generator_and_resumable():
    ids = make_batch(rows=32)
    for continuation in (None, CONTINUATION):
        a = call(ids, seed=7, continuation=continuation)
        b = call(ids, seed=7, continuation=continuation)
        c = call(ids, seed=8, continuation=continuation)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert not torch.equal(a[1], c[1])
    options = dict(probability=0.15, mask_token_id=MASK, vocab_size=V, special_token_ids=SPECIALS)
    g = torch.Generator().manual_seed(11)
    mask_tokens(ids, generator=g, **options)
    saved = g.get_state()
    second = mask_tokens(ids, generator=g, **options)
    g.set_state(saved)
    resumed = mask_tokens(ids, generator=g, **options)
    assert torch.equal(second[0], resumed[0]) and torch.equal(second[1], resumed[1])
    assert not torch.equal(second[1], call(ids, seed=11)[1])  # the generator advanced between calls


def test_edge_probabilities_and_custom_split():
    ids = make_batch(rows=16)
    special = torch.isin(ids, torch.tensor(SPECIALS))
    masked, labels = call(ids, probability=0.0)
    assert (labels == -100).all() and torch.equal(masked, ids)
    masked, labels = call(ids, probability=1.0, mask_replace_prob=1.0, random_replace_prob=0.0)
    assert torch.equal(labels != -100, ~special)
    assert (masked[~special] == MASK).all() and torch.equal(masked[special], ids[special])
    masked, labels = call(ids, probability=1.0, mask_replace_prob=0.0, random_replace_prob=0.0)
    assert torch.equal(masked, ids) and torch.equal(labels[~special], ids[~special])


def test_invalid_settings():
    ids = make_batch(rows=2)
    with pytest.raises(HftkError, match=r"mlm probability must be in \[0, 1\]"):
        call(ids, probability=1.5)
    with pytest.raises(HftkError, match="must be within"):
        call(ids, mask_replace_prob=0.8, random_replace_prob=0.3)
