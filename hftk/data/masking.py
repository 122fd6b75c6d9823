"""BERT's masked-language-model corruption, vectorised and driven by an explicit generator.

Same rule as `transformers.DataCollatorForLanguageModeling`: select `probability` of the tokens
(never special ones); of those, 80% become `[MASK]`, 10% a random token, 10% stay unchanged;
labels keep the original ids at selected positions and -100 elsewhere. Unlike the collator it
takes the `torch.Generator` as an argument, so the training loop can save and restore it and a
resumed run masks exactly as the uninterrupted one would have; or one generator per row, so that a
row is masked the same whichever batch (and process) it lands in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hftk.errors import HftkError

IGNORE_INDEX = -100


def mask_tokens(
    input_ids: torch.LongTensor,
    *,
    probability: float,
    mask_token_id: int,
    vocab_size: int,
    special_token_ids: Sequence[int],
    generator: torch.Generator | Sequence[torch.Generator],
    continuation: torch.BoolTensor | None = None,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Return `(masked_input_ids, labels)` for a batch `input_ids` of shape [batch, seq].

    With `continuation` (Bool[vocab], from `continuation_mask`), whole words are selected: the draw
    is made at each word's first token and copied to its continuation tokens, so a word is masked
    all-or-nothing (the 80/10/10 replacement is still per token, as in BERT's whole-word masking).
    Random numbers come from `generator` (on its own device) and are always drawn in the same
    amount for a given shape, so results depend only on the generator state and the input. Given
    one generator per row, each row's draws come from its own generator alone.
    """
    if not 0.0 <= probability <= 1.0:
        raise HftkError(f"mlm probability must be in [0, 1], got {probability}: use e.g. 0.15 (mlm_probability)")
    if mask_replace_prob < 0 or random_replace_prob < 0 or mask_replace_prob + random_replace_prob > 1:
        raise HftkError(
            f"mask_replace_prob ({mask_replace_prob}) + random_replace_prob ({random_replace_prob}) must be within [0, 1]: use 0.8 and 0.1"
        )
    device = input_ids.device
    shape = input_ids.shape
    specials = torch.tensor(list(special_token_ids), dtype=input_ids.dtype, device=device)
    is_special = torch.isin(input_ids, specials)

    draws, random_tokens = _draw(shape, vocab_size, generator)
    draws, random_tokens = draws.to(device), random_tokens.to(device)
    select_draw, replace_draw, random_draw = draws[0], draws[1], draws[2]

    selected = (select_draw < probability) & ~is_special
    if continuation is not None:
        selected = _whole_words(selected, input_ids, is_special, continuation.to(device))

    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    to_mask = selected & (replace_draw < mask_replace_prob)
    # Among the not-[MASK]ed selected tokens, P(random) = random / (1 - mask), so overall it is `random_replace_prob`.
    rest = 1.0 - mask_replace_prob
    to_random = selected & ~to_mask & (random_draw < (random_replace_prob / rest if rest > 0 else 0.0))
    masked = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    masked = torch.where(to_random, random_tokens.to(input_ids.dtype), masked)
    return masked, labels


def _draw(
    shape: torch.Size, vocab_size: int, generator: torch.Generator | Sequence[torch.Generator]
) -> tuple[torch.Tensor, torch.LongTensor]:
    """Three uniforms per position (select, [MASK], random) and a random token per position, on the generator's device."""
    if isinstance(generator, torch.Generator):
        draws = torch.rand((3, *shape), generator=generator, device=generator.device)
        return draws, torch.randint(vocab_size, shape, generator=generator, device=generator.device)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for {shape[0]} rows: give one per row")
    rows = [_draw(shape[1:], vocab_size, row_generator) for row_generator in generator]
    return torch.stack([draws for draws, _ in rows], dim=1), torch.stack([tokens for _, tokens in rows])


def _whole_words(
    selected: torch.BoolTensor, input_ids: torch.LongTensor, is_special: torch.BoolTensor, continuation: torch.BoolTensor
) -> torch.BoolTensor:
    """Copy each word-start's selection to the continuation tokens that follow it."""
    is_continuation = continuation.index_select(0, input_ids.reshape(-1)).view_as(input_ids) & ~is_special
    # A continuation right after a special token (or at position 0) has no word to continue: it starts one.
    is_continuation[..., 0] = False
    is_continuation[..., 1:] &= ~is_special[..., :-1]
    positions = torch.arange(input_ids.shape[-1], device=input_ids.device).expand_as(input_ids)
    word_start = torch.where(is_continuation, torch.zeros_like(positions), positions).cummax(dim=-1).values
    return selected.gather(-1, word_start) & ~is_special
