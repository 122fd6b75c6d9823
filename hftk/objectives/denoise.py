"""Denoising for encoder–decoders: BART's text infilling or T5's span corruption of packed blocks.

- text infilling (BART, Lewis et al. 2019): spans with Poisson(3) lengths cover 30 % of the
  tokens; each span becomes ONE `<mask>` (a length-0 span inserts one), so the model also
  learns how many tokens are missing; the decoder reproduces the whole original block.
- span corruption (T5, Raffel et al. 2019): spans of mean length 3 cover 15 %; each becomes a
  sentinel `<extra_id_i>`; the decoder writes only the dropped spans, each after its sentinel
  (`<extra_id_0> span <extra_id_1> span ... <extra_id_k>`), so targets are ~5x shorter.

Hand-written because neither transformers nor datasets ships these as a reusable function
(BART's lives in fairseq's `DenoisingDataset`, T5's in `run_t5_mlm_flax.py`, numpy, per example).
Noise is drawn per sample as MLM's masks are (`SampleSeeds`: from the seed and the sample's position
in the run), so a killed-and-resumed run sees the same corruptions as an uninterrupted one, and N
processes the same as one process of the same global batch.
"""

from __future__ import annotations

import torch

from hftk.data.tokenizer import SENTINELS
from hftk.errors import HftkError
from hftk.objectives.base import Objective, SampleSeeds

IGNORE = -100
METHODS = ("text_infilling", "span_corruption")
DEFAULT_NOISE_DENSITY = {"text_infilling": 0.3, "span_corruption": 0.15}


def _composition(total: int, parts: int, generator: torch.Generator) -> list[int]:
    """`total` split into `parts` non-negative integers, uniformly over the cut points (stars and bars)."""
    if parts <= 1:
        return [total]
    cuts = torch.randint(0, total + 1, (parts - 1,), generator=generator).sort().values.tolist()
    bounds = [0, *cuts, total]
    return [b - a for a, b in zip(bounds, bounds[1:])]


def _positive_composition(total: int, parts: int, generator: torch.Generator) -> list[int]:
    """`total` split into `parts` integers >= 1 (T5's random segmentation)."""
    return [1 + n for n in _composition(total - parts, parts, generator)]


def infilling_spans(length: int, density: float, mean_span: float, generator: torch.Generator) -> list[tuple[int, int]]:
    """(start, span length) of BART's masked spans: Poisson(mean_span) lengths until density·length tokens are covered."""
    target = round(length * density)
    if target == 0:
        return []
    lengths: list[int] = []
    rate = torch.tensor([float(mean_span)])
    while sum(lengths) < target:
        lengths.append(int(torch.poisson(rate, generator=generator).item()))
    lengths[-1] -= sum(lengths) - target  # the last span ends exactly at the budget
    gaps = _composition(length - target, len(lengths) + 1, generator)
    # Spans may touch (a gap of 0): each still gets its own <mask>, as fairseq's do when they overlap a word boundary.
    spans, position = [], 0
    for gap, span in zip(gaps, lengths):
        position += gap
        spans.append((position, span))
        position += span
    return spans


def corruption_spans(length: int, density: float, mean_span: float, max_spans: int, generator: torch.Generator) -> list[tuple[int, int]]:
    """(start, span length) of T5's noise spans: round(density·length) tokens in round(that / mean_span) spans, >= 1 each."""
    noise = min(max(round(length * density), 1), length - 1)
    spans = min(max(round(noise / mean_span), 1), max_spans, noise)
    noise_lengths = _positive_composition(noise, spans, generator)
    keep_lengths = _positive_composition(length - noise, spans, generator)  # T5 starts every row with kept text
    out, position = [], 0
    for keep, span in zip(keep_lengths, noise_lengths):
        position += keep
        out.append((position, span))
        position += span
    return out


class Denoising(Objective):
    """Corrupt each packed block; the model's kwargs are input_ids, attention_mask and labels (decoder targets).

    The model makes its decoder inputs from the labels (shifted right behind decoder_start_token_id).
    """

    def __init__(self, recipe, tokenizer, accelerator) -> None:
        data = recipe.data
        self.method = data.denoising
        self.density = data.noise_density if data.noise_density is not None else DEFAULT_NOISE_DENSITY[self.method]
        self.mean_span = data.mean_span_length
        self.seeds = SampleSeeds.for_run(recipe, accelerator)
        self.pad_id = tokenizer.pad_token_id
        self.mask_id = tokenizer.mask_token_id
        vocab = tokenizer.get_vocab()
        self.sentinels = [vocab[name] for name in SENTINELS if name in vocab]  # T5's <extra_id_i>, in order
        if self.pad_id is None:
            raise HftkError("denoising needs a tokenizer with a pad token (use tokenizer.kind=seq2seq)")
        if self.method == "text_infilling" and self.mask_id is None:
            raise HftkError("text infilling needs a tokenizer with a mask token (use tokenizer.kind=seq2seq)")
        if self.method == "span_corruption" and not self.sentinels:
            raise HftkError("span corruption needs sentinel tokens <extra_id_0>... in the tokenizer (use tokenizer.kind=seq2seq)")

    def corrupt(self, row: list[int], generator: torch.Generator) -> tuple[list[int], list[int]]:
        """(encoder input, decoder target) of one block, its spans drawn from `generator`."""
        if self.method == "text_infilling":
            source, last = [], 0
            for start, span in infilling_spans(len(row), self.density, self.mean_span, generator):
                source += row[last:start] + [self.mask_id]
                last = start + span
            return source + row[last:], list(row)
        source, target, last = [], [], 0
        spans = corruption_spans(len(row), self.density, self.mean_span, len(self.sentinels) - 1, generator)
        for sentinel, (start, span) in zip(self.sentinels, spans):
            source += row[last:start] + [sentinel]
            target += [sentinel] + row[start : start + span]
            last = start + span
        return source + row[last:], target + [self.sentinels[len(spans)]]

    def prepare(self, batch: dict, index: int, evaluation: bool = False) -> dict:
        blocks = batch["input_ids"]
        generators = self.seeds.generators(index, len(blocks), evaluation)  # evaluation's stream is fixed across steps
        pairs = [self.corrupt(row, generator) for row, generator in zip(blocks.tolist(), generators)]
        width = max(len(s) for s, _ in pairs)
        target_width = max(len(t) for _, t in pairs)
        input_ids = torch.tensor([s + [self.pad_id] * (width - len(s)) for s, _ in pairs], dtype=torch.long)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s, _ in pairs], dtype=torch.long)
        labels = torch.tensor([t + [IGNORE] * (target_width - len(t)) for _, t in pairs], dtype=torch.long)
        device = blocks.device
        return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}

    @staticmethod
    def count_targets(batch: dict) -> int:
        return int((batch["labels"] != IGNORE).sum())
