"""The streaming data path: blocks by hand, seeded shuffle, split across processes (in-process and on 2 real
processes), exact skip for resume, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tests.training.test_distributed import free_port
from hftk.data.streaming import (
    StreamingLoader,
    load_text_stream,
    pack_stream,
    sample_lines,
    shuffle_and_split,
)
from hftk.errors import HftkError

N_LINES = 300
BLOCK = 8  # 2 lines of "w w w" + separator per block: every block holds distinct ids


def word_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer with known ids: "w{i}" -> i + 2, [SEP] = 1, so blocks can be written by hand."""
    vocab = {"[UNK]": 0, "[SEP]": 1, **{f"w{i}": i + 2 for i in range(3 * N_LINES + 30)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", sep_token="[SEP]")


def expected_blocks() -> list[list[int]]:
    """Line i is w3i w3i+1 w3i+2, i.e. ids 3i+2..3i+4 then [SEP]; two lines a block (300 lines: no tail)."""
    flat = [token for i in range(N_LINES) for token in (3 * i + 2, 3 * i + 3, 3 * i + 4, 1)]
    return [flat[start : start + BLOCK] for start in range(0, len(flat), BLOCK)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The 300 lines in two files, with blank lines that the stream must drop."""
    folder = tmp_path_factory.mktemp("stream")
    lines = [f"w{3 * i} w{3 * i + 1} w{3 * i + 2}" for i in range(N_LINES)]
    (folder / "a.txt").write_text("\n".join(lines[:150]) + "\n\n  \n", encoding="utf-8")
    (folder / "b.txt").write_text("\n".join(lines[150:]) + "\n", encoding="utf-8")
    return folder


def blocks_of(stream) -> list[list[int]]:
    return [row["input_ids"] for row in stream]


def test_packed_stream_equals_blocks_by_hand(corpus):
    stream = load_text_stream(corpus)
    assert sample_lines(stream, 2) == ["w0 w1 w2", "w3 w4 w5"]
    assert len(sample_lines(stream, 10_000)) == N_LINES  # blank lines dropped, both files read in order
    assert blocks_of(pack_stream(stream, word_tokenizer(), BLOCK, add_special_tokens=False)) == expected_blocks()


def test_shuffle_is_seeded_and_split_covers_the_stream_without_overlap(corpus):
    packed = pack_stream(load_text_stream(corpus), word_tokenizer(), BLOCK, add_special_tokens=False)
    one = blocks_of(shuffle_and_split(packed, seed=3, buffer_size=20, rank=0, world_size=1))
    assert sorted(one) == sorted(expected_blocks()) and one != expected_blocks()
    assert blocks_of(shuffle_and_split(packed, seed=3, buffer_size=20, rank=0, world_size=1)) == one  # same seed
    assert blocks_of(shuffle_and_split(packed, seed=4, buffer_size=20, rank=0, world_size=1)) != one
    # 2 files, 2 processes: split_dataset_by_node gives each process one whole file (after a seeded shuffle of both).
    ranks = [blocks_of(shuffle_and_split(packed, seed=3, buffer_size=20, rank=r, world_size=2)) for r in (0, 1)]
    assert sorted(ranks[0] + ranks[1]) == sorted(expected_blocks())
    assert {tuple(b) for b in ranks[0]}.isdisjoint(tuple(b) for b in ranks[1])
    assert {len(r) for r in ranks} == {len(expected_blocks()) // 2}
    # 3 processes (files do not divide): every process reads the whole shuffled stream and keeps every 3rd block.
    thirds = [blocks_of(shuffle_and_split(packed, seed=3, buffer_size=20, rank=r, world_size=3)) for r in range(3)]
    assert thirds == [one[r::3] for r in range(3)]


def test_a_new_epoch_reshuffles(corpus):
    packed = pack_stream(load_text_stream(corpus), word_tokenizer(), BLOCK, add_special_tokens=False)
    loader = StreamingLoader(shuffle_and_split(packed, seed=3, buffer_size=20, rank=0, world_size=1), 4, torch.device("cpu"))
    first = [batch["input_ids"] for batch in loader]
    loader.set_epoch(1)
    second = [batch["input_ids"] for batch in loader]
    assert len(first) == len(second) == len(expected_blocks()) // 4
    assert not torch.equal(torch.cat(first), torch.cat(second))
    seen = {tuple(block) for block in torch.cat(second).tolist()}
    assert len(seen) == 37 * 4 and seen <= {tuple(block) for block in expected_blocks()}  # 2 of 150 dropped


def test_skip_gives_the_rest_of_the_epoch_and_a_short_tail_is_dropped(corpus):
    packed = pack_stream(load_text_stream(corpus), word_tokenizer(), BLOCK, add_special_tokens=False)
    loader = StreamingLoader(shuffle_and_split(packed, seed=1, buffer_size=10, rank=0, world_size=1), 7, torch.device("cpu"))
    loader.set_epoch(2)
    full = [batch["input_ids"] for batch in loader]
    assert len(full) == len(expected_blocks()) // 7  # 150 blocks: 21 batches of 7, 3 blocks dropped
    rest = [batch["input_ids"] for batch in loader.skip_first_batches(5)]
    assert len(rest) == len(full) - 5 and all(torch.equal(a, b) for a, b in zip(rest, full[5:]))
    # Another process running out ends the epoch here too.
    calls = iter([True, True, False])
    stopped = StreamingLoader(loader.dataset, 7, torch.device("cpu"), all_have=lambda has: has and next(calls))
    assert len(list(stopped)) == 2


def test_too_small_for_one_batch(corpus):
    packed = pack_stream(load_text_stream(corpus), word_tokenizer(), BLOCK, add_special_tokens=False)
    with pytest.raises(HftkError, match="not one batch"):
        list(StreamingLoader(packed, 1000, torch.device("cpu")))


def test_stream_errors(tmp_path, corpus):
    (tmp_path / "rows.jsonl").write_text('{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(HftkError, match="no column 'text'.*data.text_column"):
        load_text_stream(tmp_path / "rows.jsonl")
    assert sample_lines(load_text_stream(tmp_path / "rows.jsonl", text_column="body"), 5) == ["x"]
    with pytest.raises(HftkError, match="one file type at a time"):
        load_text_stream([tmp_path / "rows.jsonl", corpus / "a.txt"])
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01binary")
    with pytest.raises(HftkError, match="looks binary"):
        load_text_stream(tmp_path / "bin.txt")
    (tmp_path / "blank.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(HftkError, match="empty"):
        sample_lines(load_text_stream(tmp_path / "blank.txt"), 5)


RANK_SCRIPT = """
import json, sys, torch, torch.distributed as dist
from hftk.data.streaming import StreamingLoader, load_text_stream, pack_stream, shuffle_and_split
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
def all_have(has):
    flag = torch.tensor([int(has)])
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())
class Words:  # the word tokenizer of the test, without importing transformers in each process
    sep_token_id, eos_token_id = 1, None
    def __call__(self, texts, **kwargs):
        return {"input_ids": [[int(word[1:]) + 2 for word in text.split()] for text in texts]}
packed = pack_stream(load_text_stream(sys.argv[1]), Words(), 8, add_special_tokens=False)
blocks = shuffle_and_split(packed, seed=5, buffer_size=16, rank=rank, world_size=world)
batches = [b["input_ids"].tolist() for b in StreamingLoader(blocks, 4, torch.device("cpu"), all_have)]
json.dump(batches, open(f"{sys.argv[2]}/rank{rank}.json", "w"))
dist.destroy_process_group()
"""


def test_two_processes_get_disjoint_blocks_covering_the_stream(corpus, tmp_path):
    """torchrun, 2 processes, gloo: one file (every process keeps every 2nd block) and ranks agree when to stop."""
    single = tmp_path / "one.txt"
    lines = [f"w{3 * i} w{3 * i + 1} w{3 * i + 2}" for i in range(N_LINES + 2)]  # 151 blocks: 76 for rank 0, 75 for rank 1
    single.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "rank.py").write_text(RANK_SCRIPT, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         str(tmp_path / "rank.py"), str(single), str(tmp_path)],
        check=False, capture_output=True, text=True, env=env, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # Rank 0 alone has a 19th full batch; both stop after 18, or rank 0 would wait forever in its next step.
    assert len(ranks[0]) == len(ranks[1]) == 18
    blocks = [[tuple(block) for batch in rank for block in batch] for rank in ranks]
    assert set(blocks[0]).isdisjoint(blocks[1])
    # Together they are the one-process shuffled stream, in global-batch order.
    packed = pack_stream(load_text_stream(single), word_tokenizer(), BLOCK, add_special_tokens=False)
    one = [tuple(b) for b in blocks_of(shuffle_and_split(packed, seed=5, buffer_size=16, rank=0, world_size=1))]
    assert len(one) == 151 and Counter(blocks[0] + blocks[1]) == Counter(one[: 2 * 72])
    assert blocks[0] == one[0 : 144 : 2] and blocks[1] == one[1 : 144 : 2]


def test_translation_rows_stream_each_side_as_text(tmp_path):
    from hftk.data.corpus import load_text_corpus

    pairs = [{"translation": {"es": f"hola {i}", "en": f"hello {i}"}} for i in range(6)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(pair) + "\n" for pair in pairs), encoding="utf-8")
    streamed = [row["text"] for row in load_text_stream([str(path)])]
    assert streamed == [text for pair in pairs for text in (pair["translation"]["es"], pair["translation"]["en"])]
    cached = load_text_corpus([str(path)], validation_split_percentage=20)
    assert sorted(streamed) == sorted(cached["train"]["text"][:] + cached["validation"]["text"][:])  # the same text either way
    assert [row["text"] for row in load_text_stream([str(path)], text_column="translation.en")] == [f"hello {i}" for i in range(6)]
    with pytest.raises(HftkError, match="no 'fr' side"):
        load_text_stream([str(path)], text_column="translation.fr")
