"""Tiny hftk configs and a seeded model builder for the model-family tests."""

from __future__ import annotations

import contextlib

import pytest
import torch
from transformers.modeling_outputs import BaseModelOutputWithPast

import hftk  # noqa: F401  (registers the Auto classes)
from hftk.models import HftkBertConfig, HftkGptConfig, HftkSeq2SeqConfig

TINY = dict(
    vocab_size=97,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=48,
    max_position_embeddings=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


def tiny_bert_config(**overrides) -> HftkBertConfig:
    return HftkBertConfig(**{**TINY, **overrides})


def tiny_gpt_config(**overrides) -> HftkGptConfig:
    return HftkGptConfig(**{**TINY, "bos_token_id": 1, "eos_token_id": 2, **overrides})


def tiny_seq2seq_config(**overrides) -> HftkSeq2SeqConfig:
    return HftkSeq2SeqConfig(**{**TINY, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, **overrides})


def build(model_class, config, seed: int = 0):
    """A randomly initialised model in eval mode, reproducible by seed."""
    torch.manual_seed(seed)
    return model_class(config).eval()


# transformers 5.24 renamed the KV cache `past_key_values` -> `cache` (forward keyword, output field).
CACHE_RENAMED = "cache" in BaseModelOutputWithPast.__dataclass_fields__


def cache_keyword(cache_name: str):
    """Around a forward given the cache as `cache_name`: the old name warns from 5.24 on, as for
    transformers' own models; `cache`, and `past_key_values` before 5.24, take it quietly."""
    if cache_name == "past_key_values" and CACHE_RENAMED:
        return pytest.warns(FutureWarning, match="`past_key_values` is deprecated")
    return contextlib.nullcontext()
