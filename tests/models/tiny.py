"""Tiny hftk configs and a seeded model builder for the model-family tests."""

from __future__ import annotations

import torch

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
