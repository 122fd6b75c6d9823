"""Extractive question answering in the SQuAD layout (v1, and v2 with unanswerable questions).

The same steps as HF's `run_qa.py` + `utils_qa.py`:
- long contexts are split into overlapping windows (`max_seq_length`, `doc_stride`), so one
  example gives several features;
- training features carry the answer's start/end *token* positions, found through the fast
  tokenizer's `offset_mapping` (the CLS/BOS index when the answer is not inside the window,
  or the question has no answer);
- evaluation features keep `example_id` and the offsets of context tokens only, so
  `postprocess_predictions` can turn start/end logits back into answer text per example.
Features are padded to `max_seq_length` when tokenised, so token positions mean the same
thing in every batch whatever the tokenizer's padding side.
"""

from __future__ import annotations

import collections
import json
import math
from typing import Any

import datasets
import numpy as np
from transformers import PreTrainedTokenizerBase, default_data_collator

from hftk.errors import HftkError
from hftk.tasks.common import (
    TaskData,
    column,
    effective_max_length,
    keep_columns,
    load_splits,
    model_columns,
    require_column_types,
    require_columns,
    require_fast_tokenizer,
    take,
)

SQUAD_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "context": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answers": {
            "text": datasets.List(datasets.Value("string")),
            "answer_start": datasets.List(datasets.Value("int32")),
        },
    }
)
QA_COLUMNS = ("id", "context", "question", "answers")


def load_squad_json(path: str) -> datasets.Dataset:
    """Read an official (nested) SQuAD v1.1/v2.0 JSON file into the flat Hub layout.

    v2 questions marked `is_impossible` get empty answers, as in the Hub's `squad_v2`.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError as err:
        raise HftkError(f"SQuAD file {path!r} does not exist; check the path") from err
    except json.JSONDecodeError as err:
        raise HftkError(f"{path!r} is not valid JSON ({err}); expected the official SQuAD format") from err
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise HftkError(f"{path!r} is not in the SQuAD format: expected {{'data': [{{'title', 'paragraphs'}}]}}")
    rows = []
    for article in data["data"]:
        for paragraph in article.get("paragraphs", []):
            for qa in paragraph.get("qas", []):
                answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                rows.append(
                    {
                        "id": str(qa["id"]),
                        "title": article.get("title", ""),
                        "context": paragraph["context"],
                        "question": qa["question"],
                        "answers": {
                            "text": [a["text"] for a in answers],
                            "answer_start": [int(a["answer_start"]) for a in answers],
                        },
                    }
                )
    return datasets.Dataset.from_list(rows, features=SQUAD_FEATURES)


def validate_answers(examples: datasets.Dataset, split: str = "data") -> None:
    """HftkError naming the first example whose answer text is not at `answer_start` in its context."""
    require_columns(examples, QA_COLUMNS, split)
    require_column_types(examples, {"context": "text", "question": "text", "answers": "answers"}, split)
    for example_id, context, answers in zip(column(examples, "id"), column(examples, "context"), column(examples, "answers")):
        texts, starts = answers["text"], answers["answer_start"]
        if len(texts) != len(starts):
            raise HftkError(f"{split} example {example_id!r} has {len(texts)} answer texts but {len(starts)} answer_start values")
        for text, start in zip(texts, starts):
            if start is None or context[start : start + len(text)] != text:
                found = context[start : start + len(text)] if start is not None else None
                raise HftkError(
                    f"{split} example {example_id!r}: answer {text!r} is not at answer_start={start} "
                    f"in its context (found {found!r}); fix the offsets"
                )


def has_unanswerable(examples: datasets.Dataset) -> bool:
    return any(len(a["text"]) == 0 for a in column(examples, "answers"))


def _tokenize(
    examples: dict[str, list],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    doc_stride: int,
    max_question_length: int,
):
    """Question first, context second (swapped for left padding, as HF does); overflow into windows.

    Questions are cut to `max_question_length` tokens (as Google's BERT `run_squad.py`,
    max_query_length=64), so every window keeps more than `doc_stride` context tokens.
    """
    room = max_seq_length - tokenizer.num_special_tokens_to_add(pair=True) - max_question_length
    if doc_stride >= room:
        raise HftkError(
            f"doc_stride ({doc_stride}) must be smaller than the context room of a window ({room} = max_seq_length "
            f"{max_seq_length} - special tokens - max_question_length {max_question_length}); lower doc_stride "
            "or max_question_length, or raise max_seq_length"
        )
    pad_on_right = tokenizer.padding_side == "right"
    # Some SQuAD questions start with lots of whitespace, which wastes the window.
    questions = [q.lstrip() for q in examples["question"]]
    # verbose=False: a long question is measured here on purpose (and cut below), not a mistake to warn about
    offsets = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    questions = [q if len(o) <= max_question_length else q[: o[max_question_length - 1][1]] for q, o in zip(questions, offsets)]
    contexts = examples["context"]
    encoded = tokenizer(
        questions if pad_on_right else contexts,
        contexts if pad_on_right else questions,
        truncation="only_second" if pad_on_right else "only_first",
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    context_index = 1 if pad_on_right else 0
    return encoded, context_index


def _cls_index(input_ids: list[int], sequence_ids: list[int | None], context_index: int, cls_token_id: int | None) -> int:
    """Where 'no answer' points: the CLS token, else the first position outside the context.

    HF's run_qa falls back to BOS or position 0; without a CLS token (GPT-2-style tokenizers)
    those can be a context token when the window is full or left-padded, which would make
    "no answer" and "the first context token" the same prediction.
    """
    if cls_token_id is not None and cls_token_id in input_ids:
        return input_ids.index(cls_token_id)
    return next(k for k, s in enumerate(sequence_ids) if s != context_index)


def prepare_train_features(
    examples: dict[str, list],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    max_question_length: int = 64,
) -> dict[str, list]:
    """Batched `datasets.map` function: windows with `start_positions`/`end_positions` (token indices)."""
    encoded, context_index = _tokenize(examples, tokenizer, max_seq_length, doc_stride, max_question_length)
    sample_map = encoded.pop("overflow_to_sample_mapping")
    offsets_all = encoded.pop("offset_mapping")
    starts, ends = [], []
    for i, offsets in enumerate(offsets_all):
        sequence_ids = encoded.sequence_ids(i)
        cls = _cls_index(encoded["input_ids"][i], sequence_ids, context_index, tokenizer.cls_token_id)
        answers = examples["answers"][sample_map[i]]
        if not answers["answer_start"]:
            starts.append(cls)
            ends.append(cls)
            continue
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        context = [k for k, s in enumerate(sequence_ids) if s == context_index]
        first, last = context[0], context[-1]
        if offsets[first][0] > start_char or offsets[last][1] < end_char:
            starts.append(cls)  # the answer is not (wholly) inside this window
            ends.append(cls)
            continue
        start_token = first
        while start_token <= last and offsets[start_token][0] <= start_char:
            start_token += 1
        end_token = last
        while end_token >= first and offsets[end_token][1] >= end_char:
            end_token -= 1
        starts.append(start_token - 1)
        ends.append(end_token + 1)
    encoded["start_positions"] = starts
    encoded["end_positions"] = ends
    return dict(encoded)


def prepare_eval_features(
    examples: dict[str, list],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    max_question_length: int = 64,
) -> dict[str, list]:
    """Batched map function: windows plus `example_id`, `cls_index` and context-only `offset_mapping`."""
    encoded, context_index = _tokenize(examples, tokenizer, max_seq_length, doc_stride, max_question_length)
    sample_map = encoded.pop("overflow_to_sample_mapping")
    example_ids, cls_indices = [], []
    for i in range(len(encoded["input_ids"])):
        example_ids.append(examples["id"][sample_map[i]])
        sequence_ids = encoded.sequence_ids(i)
        cls_indices.append(_cls_index(encoded["input_ids"][i], sequence_ids, context_index, tokenizer.cls_token_id))
        encoded["offset_mapping"][i] = [
            list(o) if sequence_ids[k] == context_index else None for k, o in enumerate(encoded["offset_mapping"][i])
        ]
    encoded["example_id"] = example_ids
    encoded["cls_index"] = cls_indices
    return dict(encoded)


def postprocess_predictions(
    examples: datasets.Dataset,
    features: datasets.Dataset,
    start_logits: Any,
    end_logits: Any,
    *,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    version_2_with_negative: bool = False,
    null_score_diff_threshold: float = 0.0,
) -> list[dict[str, Any]]:
    """Start/end logits per feature -> one answer per example, in squad / squad_v2 metric format.

    Over all windows of an example, the best span scores start+end logit among the
    `n_best_size` top starts and ends that lie in the context, end >= start, and are at most
    `max_answer_length` tokens. With v2 the example abstains (text "") when the null score
    (CLS start+end, the lowest over its windows, as HF) beats that span by more than
    `null_score_diff_threshold`; `no_answer_probability` = sigmoid(null - best span score).
    """
    start_logits, end_logits = np.asarray(start_logits), np.asarray(end_logits)
    if len(start_logits) != len(features) or len(end_logits) != len(features):
        raise HftkError(f"got {len(start_logits)}/{len(end_logits)} start/end logit rows for {len(features)} features")
    by_example: dict[str, list[int]] = collections.defaultdict(list)
    for i, example_id in enumerate(column(features, "example_id")):
        by_example[example_id].append(i)
    offsets_all = column(features, "offset_mapping")
    cls_all = column(features, "cls_index") if "cls_index" in features.column_names else [0] * len(features)

    predictions = []
    for example_id, context in zip(column(examples, "id"), column(examples, "context")):
        best_text, best_score = "", -math.inf
        min_null = math.inf
        for i in by_example.get(example_id, []):
            starts, ends, offsets = start_logits[i], end_logits[i], offsets_all[i]
            length = min(len(offsets), len(starts))
            cls = cls_all[i]
            min_null = min(min_null, float(starts[cls] + ends[cls]))
            top_starts = np.argsort(starts[:length])[::-1][:n_best_size]
            top_ends = np.argsort(ends[:length])[::-1][:n_best_size]
            for s in top_starts:
                if offsets[s] is None:
                    continue
                for e in top_ends:
                    if offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                        continue
                    score = float(starts[s] + ends[e])
                    if score > best_score:
                        best_score, best_text = score, context[offsets[s][0] : offsets[e][1]]
        prediction: dict[str, Any] = {"id": example_id, "prediction_text": best_text}
        if version_2_with_negative:
            diff = min_null - best_score  # +inf when no span was valid
            if diff > null_score_diff_threshold:
                prediction["prediction_text"] = ""
            prediction["no_answer_probability"] = _sigmoid(diff)
        predictions.append(prediction)
    return predictions


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x)) if x != math.inf else 1.0
    return math.exp(x) / (1.0 + math.exp(x))


def squad_references(examples: datasets.Dataset) -> list[dict[str, Any]]:
    """Gold answers in squad / squad_v2 metric format."""
    return [{"id": i, "answers": a} for i, a in zip(column(examples, "id"), column(examples, "answers"))]


def compute_qa_metrics(predictions: list[dict[str, Any]], examples: datasets.Dataset, version_2_with_negative: bool) -> dict[str, float]:
    """exact_match/f1 (squad) or exact/f1/HasAns_*/NoAns_* (squad_v2), on the 0-100 scale."""
    from hftk.metrics import load_metric

    name = "squad_v2" if version_2_with_negative else "squad"
    if not version_2_with_negative:
        predictions = [{"id": p["id"], "prediction_text": p["prediction_text"]} for p in predictions]
    result = load_metric(name).compute(predictions=predictions, references=squad_references(examples))
    return {k: float(v) for k, v in result.items() if isinstance(v, (int, float))}


def prepare_qa(
    tokenizer: PreTrainedTokenizerBase,
    *,
    dataset_name: str | None = None,
    dataset_config: str | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    raw: datasets.DatasetDict | None = None,
    version_2_with_negative: bool | None = None,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    max_question_length: int = 64,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    null_score_diff_threshold: float = 0.0,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    train_sample_seed: int | None = None,
    cache_dir: str | None = None,
) -> TaskData:
    """Load (Hub, jsonl/csv/parquet in the Hub layout, or official SQuAD .json) and featurise.

    `version_2_with_negative=None` turns v2 on when any example has no answer.
    """
    require_fast_tokenizer(tokenizer, "question answering")
    if tokenizer.pad_token is None:
        raise HftkError(
            "question answering pads windows to max_seq_length but the tokenizer has no pad token; "
            "set one (e.g. tokenizer.pad_token = tokenizer.eos_token) before preparing the data"
        )
    if raw is None:
        raw = _load_qa(dataset_name, dataset_config, train_file, validation_file, cache_dir)
    train = take(raw["train"], max_train_samples, seed=train_sample_seed) if "train" in raw else None
    evals = {s: take(raw[s], max_eval_samples) for s in ("validation",) if s in raw}
    if train is None and not evals:
        raise HftkError(f"QA data has neither a train nor a validation split (it has {list(raw)})")
    for split, ds in [("train", train), *evals.items()]:
        if ds is not None:
            validate_answers(ds, split)
    if version_2_with_negative is None:
        version_2_with_negative = any(has_unanswerable(ds) for ds in [train, *evals.values()] if ds is not None)
    max_seq_length = effective_max_length(tokenizer, max_seq_length)
    kwargs = {
        "tokenizer": tokenizer, "max_seq_length": max_seq_length, "doc_stride": doc_stride,
        "max_question_length": max_question_length,
    }

    train_features = None
    if train is not None:
        train_features = train.map(
            prepare_train_features, batched=True, remove_columns=train.column_names, fn_kwargs=kwargs,
            desc="QA train windows",
        )
        train_features = keep_columns(train_features, model_columns(tokenizer, ["start_positions", "end_positions"]))
    eval_full = {
        split: ds.map(prepare_eval_features, batched=True, remove_columns=ds.column_names, fn_kwargs=kwargs, desc=f"QA {split} windows")
        for split, ds in evals.items()
    }

    def answers(split: str, predictions: Any) -> list[dict[str, Any]]:
        start_logits, end_logits = predictions
        return postprocess_predictions(
            evals[split], eval_full[split], start_logits, end_logits, n_best_size=n_best_size,
            max_answer_length=max_answer_length, version_2_with_negative=version_2_with_negative,
            null_score_diff_threshold=null_score_diff_threshold,
        )

    def compute_metrics(split: str, predictions: Any) -> dict[str, float]:
        return compute_qa_metrics(answers(split, predictions), evals[split], version_2_with_negative)

    return TaskData(
        kind="question_answering",
        train=train_features,
        eval={split: keep_columns(ds, model_columns(tokenizer, [])) for split, ds in eval_full.items()},
        collator=default_data_collator,
        compute_metrics=compute_metrics,
        main_metric="f1",
        eval_examples=evals,
        eval_features=eval_full,
        problem_type="squad_v2" if version_2_with_negative else "squad",
        predictions=answers,
    )


def _load_qa(dataset_name, dataset_config, train_file, validation_file, cache_dir) -> datasets.DatasetDict:
    files = {"train": train_file, "validation": validation_file}
    if any(p and p.endswith(".json") and _is_nested_squad(p) for p in files.values()):
        return datasets.DatasetDict({split: load_squad_json(p) for split, p in files.items() if p})
    return load_splits(dataset_name=dataset_name, dataset_config=dataset_config, data_files=files, cache_dir=cache_dir)


def _is_nested_squad(path: str) -> bool:
    """An official SQuAD file is one JSON object with a "data" list (JSON lines fail to parse as one)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False  # the Hub-layout loader reads it, with its own checks and errors
    return isinstance(data, dict) and isinstance(data.get("data"), list)
