"""Tiny randomly initialised encoder–decoders (hftk_seq2seq, BART, Marian) with a small seq2seq BPE tokenizer.

The seq2seq tasks must work for any `AutoModelForSeq2SeqLM`; these are the stand-ins tests
fine-tune, a few hundred kB each, saved as ordinary model folders.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import torch

BIBLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "translation" / "bible_en_es"


def bible_rows(split: str, n: int, start: int = 0, shared: Path | None = None) -> list[dict]:
    folder = (shared / "data" / "translation" / "bible_en_es") if shared else BIBLE
    with open(folder / f"{split}.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in itertools.islice(handle, start, start + n)]


def seq2seq_tokenizer(texts: list[str], vocab_size: int = 400):
    """hftk's seq2seq BPE (<pad> <s> </s> <unk> <mask>, sentinels; encodings end in </s>)."""
    from hftk.data.tokenizer import train_tokenizer

    return train_tokenizer(texts, kind="seq2seq", vocab_size=vocab_size, min_frequency=1, model_max_length=256)


def _ids(tokenizer) -> dict:
    return dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)


def _save(model, tokenizer, folder: Path) -> Path:
    from hftk.data.tokenizer import save_tokenizer

    model.save_pretrained(folder)
    save_tokenizer(tokenizer, folder)
    return folder


def save_tiny_hftk(folder: Path, tokenizer, seed: int = 0, **config) -> Path:
    import hftk  # noqa: F401
    from hftk.models import HftkSeq2SeqConfig, HftkSeq2SeqForConditionalGeneration

    torch.manual_seed(seed)
    fields = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=256)
    fields.update(config)
    cfg = HftkSeq2SeqConfig(vocab_size=len(tokenizer), decoder_start_token_id=tokenizer.bos_token_id, **_ids(tokenizer), **fields)
    return _save(HftkSeq2SeqForConditionalGeneration(cfg), tokenizer, folder)


def save_tiny_bart(folder: Path, tokenizer, seed: int = 0) -> Path:
    """BART starts decoding from EOS (decoder_start_token_id = eos)."""
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(seed)
    config = BartConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
        decoder_start_token_id=tokenizer.eos_token_id, forced_eos_token_id=None, **_ids(tokenizer),
    )
    return _save(BartForConditionalGeneration(config), tokenizer, folder)


def save_tiny_marian(folder: Path, tokenizer, seed: int = 0) -> Path:
    """Marian starts decoding from the pad token (decoder_start_token_id = pad), sinusoidal positions."""
    from transformers import MarianConfig, MarianMTModel

    torch.manual_seed(seed)
    config = MarianConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
        decoder_start_token_id=tokenizer.pad_token_id, forced_eos_token_id=None, **_ids(tokenizer),
    )
    return _save(MarianMTModel(config), tokenizer, folder)
