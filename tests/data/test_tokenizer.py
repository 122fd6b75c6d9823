"""train_tokenizer / load_tokenizer / continuation_mask, checked against the real BERT and GPT-2 conventions."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer

from hftk.data.tokenizer import continuation_mask, load_tokenizer, train_tokenizer
from hftk.errors import HftkError

SAMPLE = "Emma Woodhouse, handsome, clever, and rich -- Mr. Knightley's café!"
CONTEXT = (
    "Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy disposition, seemed to unite "
    "some of the best blessings of existence; and had lived nearly twenty-one years in the world with very little "
    "to distress or vex her. She was the youngest of the two daughters of a most affectionate, indulgent father."
)


def test_wordpiece_is_bert_style(wordpiece, minilm_dir):
    assert len(wordpiece) == 800
    assert wordpiece.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert (wordpiece.pad_token_id, wordpiece.cls_token_id, wordpiece.sep_token_id, wordpiece.mask_token_id) == (0, 2, 3, 4)
    assert wordpiece.model_max_length == 128
    single = wordpiece("handsome and rich")
    assert single["input_ids"][0] == 2 and single["input_ids"][-1] == 3
    pair = wordpiece("handsome", "rich")
    n_a = len(wordpiece("handsome", add_special_tokens=False)["input_ids"])
    assert pair["input_ids"].count(3) == 2 and pair["input_ids"][n_a + 1] == 3
    assert pair["token_type_ids"] == [0] * (n_a + 2) + [1] * (len(pair["input_ids"]) - n_a - 2)
    # Lower-casing and accent stripping: both spellings give the same ids.
    assert wordpiece("CAFÉ Émma")["input_ids"] == wordpiece("cafe emma")["input_ids"]
    # Same normalisation and word splitting as the real bert-base-uncased tokenizer.
    reference = AutoTokenizer.from_pretrained(minilm_dir).backend_tokenizer
    ours = wordpiece.backend_tokenizer
    assert ours.pre_tokenizer.pre_tokenize_str(ours.normalizer.normalize_str(SAMPLE)) == reference.pre_tokenizer.pre_tokenize_str(
        reference.normalizer.normalize_str(SAMPLE)
    )
    tokens = wordpiece.tokenize("indulgent woodhouse")
    assert any(t.startswith("##") for t in tokens) and wordpiece.decode(wordpiece("indulgent woodhouse")["input_ids"], skip_special_tokens=True) == "indulgent woodhouse"


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_save_and_reload_with_auto_tokenizer(kind, request, tmp_path, austen_lines):
    tokenizer = request.getfixturevalue(kind)
    tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["model_max_length"] == 128
    for loaded in (AutoTokenizer.from_pretrained(tmp_path), load_tokenizer(str(tmp_path))):
        assert loaded.special_tokens_map == tokenizer.special_tokens_map
        assert loaded.get_vocab() == tokenizer.get_vocab()
        for text in austen_lines[:50] + [SAMPLE]:
            assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
        assert loaded("a", "b") == tokenizer("a", "b")


def test_bpe_is_gpt2_style(bpe):
    assert len(bpe) == 600
    assert bpe.convert_ids_to_tokens(0) == "<|endoftext|>"
    assert bpe.bos_token == bpe.eos_token == bpe.unk_token == bpe.pad_token == "<|endoftext|>"
    assert bpe.pad_token_id == bpe.eos_token_id == 0
    text = "Emma's café — naïve 🙂 über\ttabs\nand newlines"
    ids = bpe(text)["input_ids"]
    assert 0 not in ids  # byte-level: nothing is unknown, and no special token is added
    assert bpe.decode(ids) == text  # lossless
    assert bpe("Emma")["input_ids"] == bpe("Emma", add_special_tokens=False)["input_ids"]
    assert bpe.tokenize(" Emma")[0].startswith("Ġ")
    # A leading space is its own byte: "Emma" and " Emma" differ, as in GPT-2.
    assert bpe(" Emma")["input_ids"] != bpe("Emma")["input_ids"]


def test_qa_style_calls_give_overflow_windows_and_offsets(wordpiece):
    question = "Who was handsome, clever and rich?"
    enc = wordpiece(
        question, CONTEXT, truncation="only_second", max_length=48, stride=12,
        return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length",
    )
    n_windows = len(enc["input_ids"])
    assert n_windows >= 3 and enc["overflow_to_sample_mapping"] == [0] * n_windows
    context_tokens = wordpiece(CONTEXT, add_special_tokens=False)["input_ids"]
    covered = []
    for i in range(n_windows):
        ids, offsets, seq = enc["input_ids"][i], enc["offset_mapping"][i], enc.sequence_ids(i)
        assert len(ids) == 48 and ids[0] == wordpiece.cls_token_id
        window = [t for t, s in zip(ids, seq) if s == 1]
        covered.append(window)
        for token_id, (start, end), s in zip(ids, offsets, seq):
            if s == 1 and token_id != wordpiece.unk_token_id:
                piece = wordpiece.convert_ids_to_tokens(token_id).removeprefix("##")
                assert CONTEXT[start:end].lower() == piece  # offsets point into the raw context
            if s is None:
                assert (start, end) == (0, 0)
    # Windows overlap by `stride` tokens and together cover the whole context, in order.
    assert covered[0] == context_tokens[: len(covered[0])]
    for previous, current in zip(covered, covered[1:]):
        assert current[:12] == previous[-12:]
    assert covered[-1] == context_tokens[-len(covered[-1]):]


def test_word_ids_for_token_classification(wordpiece, bpe):
    words = ["Emma", "Woodhouse", "was", "handsome"]
    enc = wordpiece(words, is_split_into_words=True)
    word_ids = enc.word_ids()
    assert word_ids[0] is None and word_ids[-1] is None
    assert [w for w in word_ids if w is not None] == sorted(w for w in word_ids if w is not None)
    assert set(w for w in word_ids if w is not None) == {0, 1, 2, 3}
    for index, word in enumerate(words):
        pieces = [wordpiece.convert_ids_to_tokens(t) for t, w in zip(enc["input_ids"], word_ids) if w == index]
        assert "".join(p.removeprefix("##") for p in pieces) == word.lower()
    bpe_enc = bpe("Emma Woodhouse was handsome", return_offsets_mapping=True)
    assert max(w for w in bpe_enc.word_ids()) == 3
    # ByteLevel(trim_offsets=True): a word's offsets do not include its leading space.
    assert all(not "Emma Woodhouse was handsome"[s:e].startswith(" ") for s, e in bpe_enc["offset_mapping"])


def test_tokenizers_work_in_pipelines(wordpiece, bpe):
    from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel, pipeline

    torch.manual_seed(0)
    bert = BertForMaskedLM(BertConfig(vocab_size=len(wordpiece), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    predictions = pipeline("fill-mask", model=bert, tokenizer=wordpiece, top_k=3)("Emma was [MASK] and rich.")
    assert len(predictions) == 3 and all(p["token"] < len(wordpiece) for p in predictions)
    gpt = GPT2LMHeadModel(GPT2Config(vocab_size=len(bpe), n_embd=32, n_layer=1, n_head=2, n_positions=64))
    gpt.generation_config.pad_token_id = bpe.pad_token_id
    out = pipeline("text-generation", model=gpt, tokenizer=bpe)("Emma was", max_new_tokens=5, do_sample=False)
    assert out[0]["generated_text"].startswith("Emma was")


def test_continuation_mask_wordpiece_matches_vocab_file(minilm_dir):
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    mask = continuation_mask(tokenizer)
    vocab = open(f"{minilm_dir}/vocab.txt", encoding="utf-8").read().splitlines()
    expected = [token.startswith("##") for token in vocab]
    assert mask.dtype == torch.bool and mask.shape == (len(tokenizer),) == (30522,)
    assert mask.tolist() == expected
    assert mask[tokenizer.convert_tokens_to_ids("##ing")] and not mask[tokenizer.convert_tokens_to_ids("the")]


def test_continuation_mask_bpe_and_trained_wordpiece(bpe, wordpiece):
    mask = continuation_mask(bpe)
    vocab = bpe.get_vocab()
    expected = torch.zeros(len(bpe), dtype=torch.bool)
    for token, index in vocab.items():
        expected[index] = not token.startswith("Ġ") and token != "<|endoftext|>"
    assert torch.equal(mask, expected)
    assert not mask[0] and mask.sum() > 0 and (~mask).sum() > 1
    wp_mask = continuation_mask(wordpiece)
    assert wp_mask[:5].tolist() == [False] * 5
    assert wp_mask.sum() == sum(token.startswith("##") for token in wordpiece.get_vocab())


def test_errors(tmp_path, austen_lines):
    with pytest.raises(HftkError, match=r"cannot load a tokenizer from .*nope"):
        load_tokenizer(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(HftkError, match="cannot load a tokenizer from directory"):
        load_tokenizer(str(tmp_path / "empty"))
    with pytest.raises(HftkError, match="too small for bpe: use at least 257"):
        train_tokenizer(austen_lines, kind="bpe", vocab_size=100)
    with pytest.raises(HftkError, match="unknown tokenizer kind 'unigram'"):
        train_tokenizer(austen_lines, kind="unigram", vocab_size=1000)
    with pytest.raises(HftkError, match="training text is empty"):
        train_tokenizer([], kind="wordpiece", vocab_size=1000)
    with pytest.raises(HftkError, match="training text is empty"):
        train_tokenizer(["", "  "], kind="bpe", vocab_size=1000)


def test_saved_tokenizer_config_has_no_load_time_keys(wordpiece, tmp_path):
    """transformers 5 records `is_local`/`local_files_only` when loading and writes them back on save;
    a run folder (and so the Hub) must get the tokenizer's own settings only, however it was loaded."""
    from hftk.data.tokenizer import LOAD_TIME_KEYS, save_tokenizer

    wordpiece.save_pretrained(tmp_path / "trained")
    original = json.loads((tmp_path / "trained" / "tokenizer_config.json").read_text())
    loaded = load_tokenizer(str(tmp_path / "trained"))
    before = dict(loaded.init_kwargs)
    save_tokenizer(loaded, tmp_path / "resaved")
    saved = json.loads((tmp_path / "resaved" / "tokenizer_config.json").read_text())
    assert saved == original and not set(LOAD_TIME_KEYS) & set(saved)
    assert loaded.init_kwargs == before  # the caller's tokenizer is left as it was
    assert load_tokenizer(str(tmp_path / "resaved"))(SAMPLE)["input_ids"] == wordpiece(SAMPLE)["input_ids"]


TRAIN_IN_A_PROCESS = """
import sys
from pathlib import Path
from hftk.data.tokenizer import train_tokenizer

lines = [l for l in Path(sys.argv[1]).read_text(encoding="utf-8").splitlines() if l.strip()][:200]
for run in range(int(sys.argv[3])):
    train_tokenizer(lines, kind=sys.argv[4], vocab_size=8192).save_pretrained(f"{sys.argv[2]}/{run}")
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_training_is_reproducible_across_processes(kind, tmp_path):
    """Same corpus and settings, separate processes with different PYTHONHASHSEED: byte-identical files.

    On 200 Brown lines the old WordPiece training gave a different vocabulary in 5 runs out
    of 6 (the trainer breaks frequency ties by ids handed out in random hash-map order), and
    differs within one process too; 3 processes x 3 runs catch that with near certainty.
    """
    import os
    import subprocess
    import sys

    from tests.data.conftest import PRETRAIN

    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    for seed in ("0", "1", "2"):
        subprocess.run(
            [sys.executable, "-c", TRAIN_IN_A_PROCESS, str(PRETRAIN / "brown.txt"), str(tmp_path / seed), "3", kind],
            check=True, env={**env, "PYTHONHASHSEED": seed}, timeout=300,
        )
    folders = sorted(tmp_path.glob("*/*"))
    assert len(folders) == 9
    reference = folders[0]
    files = sorted(p.name for p in reference.iterdir())
    assert "tokenizer.json" in files
    for folder in folders[1:]:
        assert sorted(p.name for p in folder.iterdir()) == files
        for name in files:
            assert (folder / name).read_bytes() == (reference / name).read_bytes(), f"{folder}/{name}"
    saved = json.loads((reference / "tokenizer.json").read_text())
    added = [token["content"] for token in saved["added_tokens"]]
    if kind == "wordpiece":  # the continuation symbols that fix the trainer's order are not left as special tokens
        assert added == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        assert all(token["special"] for token in saved["added_tokens"])
        assert len(saved["model"]["vocab"]) > 1000  # merges were learned, not just the alphabet
    else:
        assert added == ["<|endoftext|>"]
