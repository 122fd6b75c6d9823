"""tokenize_and_pack / group_texts: exact blocks on hand-made ids, real-corpus accounting, caching, errors."""

from __future__ import annotations

import os

import datasets
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from hftk.data.packing import group_texts, tokenize_and_pack
from hftk.errors import HftkError

# A word-level toy tokenizer with known ids, so expected blocks can be written by hand.
VOCAB = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "a": 5, "b": 6, "c": 7}


@pytest.fixture(scope="module")
def toy():
    backend = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )


TOY_LINES = ["a b", "c", "b b c", "a"]  # -> 5 6 [3] | 7 [3] | 6 6 7 [3] | 5 [3]: 11 tokens


def test_group_texts_by_hand():
    batch = {"input_ids": [[1, 2, 3], [4, 5], [6, 7, 8, 9]]}
    assert group_texts(batch, block_size=4) == {"input_ids": [[1, 2, 3, 4], [5, 6, 7, 8]]}  # 9 dropped
    assert group_texts(batch, block_size=5, cls_id=101, sep_id=102) == {
        "input_ids": [[101, 1, 2, 3, 102], [101, 4, 5, 6, 102], [101, 7, 8, 9, 102]]
    }
    assert group_texts(batch, block_size=10) == {"input_ids": []}


def test_clm_blocks_exact(toy):
    packed = tokenize_and_pack(datasets.Dataset.from_dict({"text": TOY_LINES}), toy, 4, add_special_tokens=False)
    assert packed.column_names == ["input_ids"]
    assert packed["input_ids"][:] == [[5, 6, 3, 7], [3, 6, 6, 7]]  # tail [3, 5, 3] dropped


def test_mlm_blocks_exact(toy):
    packed = tokenize_and_pack(datasets.Dataset.from_dict({"text": TOY_LINES}), toy, 5, add_special_tokens=True)
    # 3 content tokens per block between [CLS]=2 and [SEP]=3; 11 tokens -> 3 blocks, 2 dropped.
    assert packed["input_ids"][:] == [[2, 5, 6, 3, 3], [2, 7, 3, 6, 3], [2, 6, 7, 3, 3]]


def test_torch_format_is_a_long_matrix(toy):
    packed = tokenize_and_pack(datasets.Dataset.from_dict({"text": TOY_LINES * 5}), toy, 4, add_special_tokens=False)
    batch = packed.with_format("torch")[:3]["input_ids"]
    assert isinstance(batch, torch.Tensor) and batch.dtype == torch.int64 and batch.shape == (3, 4)
    assert packed.features["input_ids"] == datasets.List(datasets.Value("int64"), length=4)


@pytest.mark.parametrize("kind, block_size, mlm", [("wordpiece", 64, True), ("bpe", 64, False)])
def test_real_corpus_accounting(kind, block_size, mlm, request, austen_lines):
    tokenizer = request.getfixturevalue(kind)
    separator = tokenizer.sep_token_id if kind == "wordpiece" else tokenizer.eos_token_id
    assert separator == (3 if kind == "wordpiece" else 0)
    # Independent reference: concatenate every line's ids plus the separator, cut once (one map batch).
    stream = []
    for line in austen_lines:
        stream += tokenizer(line, add_special_tokens=False)["input_ids"] + [separator]
    content = block_size - 2 if mlm else block_size
    expected = [stream[i : i + content] for i in range(0, len(stream) // content * content, content)]
    if mlm:
        expected = [[tokenizer.cls_token_id, *block, tokenizer.sep_token_id] for block in expected]
    packed = tokenize_and_pack(datasets.Dataset.from_dict({"text": austen_lines}), tokenizer, block_size, add_special_tokens=mlm, batch_size=1000)
    assert len(expected) > 20
    assert packed["input_ids"][:] == expected
    # With batches of 100 lines each batch drops its own tail: at most one block lost per batch.
    small = tokenize_and_pack(datasets.Dataset.from_dict({"text": austen_lines}), tokenizer, block_size, add_special_tokens=mlm, batch_size=100)
    assert len(expected) - 3 <= len(small) <= len(expected)


def test_second_call_hits_the_cache_and_a_different_block_size_does_not(tmp_path, wordpiece, austen_lines):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(austen_lines[:100]) + "\n", encoding="utf-8")
    dataset = datasets.load_dataset("text", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache"))
    first = tokenize_and_pack(dataset, wordpiece, 32, add_special_tokens=True)
    cache_file = first.cache_files[0]["filename"]
    written_at = os.stat(cache_file).st_mtime_ns
    wordpiece("the tokenizer has been used in between", truncation=True, max_length=4)
    second = tokenize_and_pack(dataset, wordpiece, 32, add_special_tokens=True)
    assert second.cache_files == first.cache_files and second._fingerprint == first._fingerprint
    assert os.stat(cache_file).st_mtime_ns == written_at  # loaded, not rewritten
    other = tokenize_and_pack(dataset, wordpiece, 16, add_special_tokens=True)
    assert other._fingerprint != first._fingerprint and len(other[0]["input_ids"]) == 16


def test_multiprocess_map_gives_the_same_blocks(wordpiece, austen_lines):
    dataset = datasets.Dataset.from_dict({"text": austen_lines[:200]})
    one = tokenize_and_pack(dataset, wordpiece, 32, add_special_tokens=True, batch_size=50)
    two = tokenize_and_pack(dataset, wordpiece, 32, add_special_tokens=True, batch_size=50, num_proc=2)
    assert two["input_ids"][:] == one["input_ids"][:]


def test_errors(toy, bpe):
    tiny = datasets.Dataset.from_dict({"text": ["a b", "c"]})
    with pytest.raises(HftkError, match=r"corpus too small for block_size 8: .*5 tokens and yields 0 blocks; lower data\.max_seq_length or add text"):
        tokenize_and_pack(tiny, toy, 8, add_special_tokens=False, desc="train")
    with pytest.raises(HftkError, match="block_size 2 is too small: use at least 3"):
        tokenize_and_pack(tiny, toy, 2, add_special_tokens=True)
    with pytest.raises(HftkError, match=r"MLM packing needs a tokenizer with \[CLS\] and \[SEP\]"):
        tokenize_and_pack(tiny, bpe, 8, add_special_tokens=True)
    with pytest.raises(HftkError, match=r"no column 'text' \(columns: body\)"):
        tokenize_and_pack(datasets.Dataset.from_dict({"body": ["a"]}), toy, 4, add_special_tokens=False)
