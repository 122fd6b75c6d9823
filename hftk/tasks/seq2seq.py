"""Encoder–decoder fine-tuning: translation (Hub WMT/opus layout) and summarization (document -> summary).

Both tasks are the same thing once the data is read: a source text goes into the encoder, the
decoder learns the target (labels = target ids ending in EOS, -100 on padding), and evaluation
generates with the recipe's `generation` settings and scores the texts. They work for any
`AutoModelForSeq2SeqLM` (hftk_seq2seq, BART, T5, Marian, ...), as HF's `run_translation.py` and
`run_summarization.py` do:

- translation rows are `{"translation": {"en": ..., "es": ...}}`; `data.source_lang` /
  `data.target_lang` pick the two sides; metrics are SacreBLEU's BLEU and chrF (detokenized
  text, default 13a tokenisation), with their signatures in metrics.json;
- summarization rows have `data.source_column` / `data.target_column` (document / summary);
  metrics are ROUGE-1/2/L/Lsum (stemmed, as run_summarization) and BLEU.

`data.source_prefix` goes before every source (T5's "translate English to German: ").
Label smoothing (`training.label_smoothing_factor`, 0.1 in the Transformer paper) is applied by
`label_smoothed_loss`, a loss hook of the training loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerBase

from hftk.errors import HftkError
from hftk.tasks.common import (
    TaskData,
    column,
    effective_max_length,
    load_splits,
    require_column_types,
    require_columns,
    require_split,
    take,
)
from hftk.tasks.generation import sacrebleu_signatures as translation_signatures  # SacreBLEU's, for BLEU and chrF

IGNORE = -100
# What `finetune translation` can start from (shown when a model does not fit).
FITTING_MODEL_TYPES = "hftk_seq2seq (from `hftk pretrain pretrain-seq2seq`), bart, mbart, marian, t5, mt5, pegasus"


# ---------------------------------------------------------------------------------------------
# Checks that run before any work
# ---------------------------------------------------------------------------------------------


def require_seq2seq_model(config, task: str, path: str | None) -> None:
    """HftkError unless `config` belongs to an encoder–decoder model with an `AutoModelForSeq2SeqLM` class."""
    import transformers

    if type(config) in transformers.AutoModelForSeq2SeqLM._model_mapping:
        return
    # BERT has a causal-LM head class too: an encoder is anything with a masked-LM head.
    if type(config) in transformers.AutoModelForMaskedLM._model_mapping:
        kind, hint = "an encoder-only model", ""
    elif type(config) in transformers.AutoModelForCausalLM._model_mapping:
        kind, hint = "a decoder-only model", "; to fine-tune a decoder on source -> target prompts use `hftk finetune generation`"
    elif not getattr(config, "is_encoder_decoder", False):
        kind, hint = "not an encoder–decoder", ""
    else:
        kind, hint = "an encoder–decoder without a seq2seq LM head", ""
    raise HftkError(
        f"finetune {task} needs an encoder–decoder model (AutoModelForSeq2SeqLM), but {path} is {config.model_type}, "
        f"{kind}: use one of {FITTING_MODEL_TYPES}{hint}"
    )


def check_generation_fits(max_new_tokens: int, limit: int | None) -> None:
    """Models with learned decoder positions (BART, Marian) cannot generate past them."""
    if limit is not None and max_new_tokens >= limit:
        raise HftkError(
            f"generation.max_new_tokens ({max_new_tokens}) must be smaller than the model's {limit} positions; "
            f"use at most {limit - 1}"
        )


def translation_languages(dataset: datasets.Dataset) -> list[str]:
    """The language keys of the `translation` column (a Hub `Translation` feature or a JSON struct)."""
    feature = dataset.features["translation"]
    if isinstance(feature, datasets.Translation):
        return list(feature.languages)
    if isinstance(feature, dict):
        return list(feature)
    return []


def translation_pairs(dataset: datasets.Dataset, split: str, source_lang: str, target_lang: str) -> datasets.Dataset:
    """`source` / `target` columns from the `translation` column; every row must have both sides."""
    layout = '{"translation": {"%s": ..., "%s": ...}}' % (source_lang, target_lang)
    require_columns(dataset, ["translation"], split)
    rows = column(dataset, "translation")
    # A key no row has is the recipe's mistake (the languages); one some rows lack is the data's (those rows).
    # A Translation or struct feature lists the languages; rows of mixed shape load as JSON: read them off the rows.
    languages = translation_languages(dataset) or sorted({key for row in rows if isinstance(row, dict) for key in row})
    missing = [lang for lang in (source_lang, target_lang) if lang not in languages]
    if missing:
        raise HftkError(
            f"{split} data has no {' or '.join(map(repr, missing))} text in its translation column (it has languages "
            f"{languages}); set data.source_lang and data.target_lang to two of them, rows as {layout}"
        )
    for index, row in enumerate(rows):
        if row is None:
            raise HftkError(f"{split} data row {index + 1} has no 'translation'; every row needs both sides ({layout}): drop or fill that row")
        if not isinstance(row, dict):
            raise HftkError(
                f"{split} data row {index + 1}: 'translation' holds {type(row).__name__} {str(row)[:40]!r}, not an object "
                f"of texts by language; rows as {layout}: fix that row"
            )
        empty = [lang for lang in (source_lang, target_lang) if not isinstance(row.get(lang), str) or not row[lang]]
        if empty:
            raise HftkError(
                f"{split} data row {index + 1} has no {' or '.join(map(repr, empty))} text; every row needs both sides "
                f"({layout}): drop or fill that row"
            )
    return datasets.Dataset.from_dict({"source": [r[source_lang] for r in rows], "target": [r[target_lang] for r in rows]})


def column_pairs(dataset: datasets.Dataset, split: str, source_column: str, target_column: str) -> datasets.Dataset:
    """`source` / `target` columns from two named columns (summarization: document / summary)."""
    options = {source_column: "data.source_column", target_column: "data.target_column"}
    require_columns(dataset, [source_column, target_column], split, options)
    require_column_types(dataset, {source_column: "text", target_column: "text"}, split, options)
    sources, targets = column(dataset, source_column), column(dataset, target_column)
    for index, (source, target) in enumerate(zip(sources, targets)):
        if not isinstance(source, str) or not isinstance(target, str) or not source.strip():
            raise HftkError(
                f"{split} data row {index + 1} has no text in {source_column!r} or {target_column!r}; drop or fill that row"
            )
    return datasets.Dataset.from_dict({"source": sources, "target": targets})


# ---------------------------------------------------------------------------------------------
# Features, loss, generation, metrics
# ---------------------------------------------------------------------------------------------


def tokenize_pairs(
    examples: dict[str, list],
    tokenizer: PreTrainedTokenizerBase,
    *,
    source_prefix: str = "",
    max_source_length: int,
    max_target_length: int,
) -> dict[str, list]:
    """Batched map function: encoder input_ids/attention_mask and decoder labels (ending in EOS).

    `text_target` lets tokenizers with a separate target vocabulary (Marian) switch to it.
    A tokenizer that adds no EOS to the target gets one appended: without it the model never
    learns to stop.
    """
    sources = [source_prefix + text for text in examples["source"]]
    model_inputs = tokenizer(sources, max_length=max_source_length, truncation=True)
    labels = tokenizer(text_target=list(examples["target"]), max_length=max_target_length, truncation=True)["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is not None:
        labels = [ids if ids and ids[-1] == eos else ids[: max_target_length - 1] + [eos] for ids in labels]
    model_inputs["labels"] = labels
    return dict(model_inputs)


def label_smoothed_loss(epsilon: float, causal: bool = False) -> Callable[..., torch.Tensor]:
    """A `TrainingHooks.compute_loss`: cross-entropy with label smoothing `epsilon` over the target tokens.

    torch's `cross_entropy(label_smoothing=...)` is the smoothing of the Transformer paper (and
    of HF Trainer's `label_smoothing_factor`): the target gets 1 - epsilon, every class epsilon / V.
    `causal`: a decoder-only model (`finetune generation`), whose labels are its inputs: position t
    predicts label t + 1, as transformers' causal-LM loss shifts them.
    """

    def compute(model, batch: dict[str, torch.Tensor], num_items_in_batch: torch.Tensor | None = None) -> torch.Tensor:
        labels = batch["labels"]
        # Without labels the model computes no loss of its own (hftk's fused LM loss would return no logits).
        inputs = {k: v for k, v in batch.items() if k != "labels"} if causal or "decoder_input_ids" in batch else batch
        logits = model(**inputs, use_cache=False).logits  # use_cache=False: no KV cache we would never use
        if causal:
            logits, labels = logits[:, :-1], labels[:, 1:]
        reduction = "sum" if num_items_in_batch is not None else "mean"
        loss = F.cross_entropy(
            logits.flatten(0, 1).float(), labels.flatten().to(logits.device), ignore_index=IGNORE,
            label_smoothing=epsilon, reduction=reduction,
        )
        return loss / num_items_in_batch if num_items_in_batch is not None else loss

    return compute


def pad_sources(source_ids: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded encoder inputs (learned absolute positions must start at 0 on every row)."""
    length = max(len(ids) for ids in source_ids)
    input_ids = [list(ids) + [pad_id] * (length - len(ids)) for ids in source_ids]
    mask = [[1] * len(ids) + [0] * (length - len(ids)) for ids in source_ids]
    return {"input_ids": torch.tensor(input_ids, dtype=torch.long), "attention_mask": torch.tensor(mask, dtype=torch.long)}


@torch.no_grad()
def generate_texts(
    model, tokenizer: PreTrainedTokenizerBase, source_ids: Sequence[Sequence[int]], settings, *,
    batch_size: int, device: torch.device | str = "cpu", synced_gpus: bool = False,
) -> list[str]:
    """Decode every source with `settings` (the recipe's generation section); the texts, in order."""
    texts: list[str] = []
    for start in range(0, len(source_ids), batch_size):
        inputs = {k: v.to(device) for k, v in pad_sources(source_ids[start : start + batch_size], tokenizer.pad_token_id).items()}
        sequences = model.generate(
            **inputs,
            max_new_tokens=settings.max_new_tokens,
            num_beams=settings.num_beams,
            length_penalty=settings.length_penalty,
            do_sample=settings.do_sample,
            temperature=settings.temperature if settings.do_sample else None,
            top_p=settings.top_p if settings.do_sample else None,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            synced_gpus=synced_gpus,
        )
        texts.extend(text.strip() for text in tokenizer.batch_decode(sequences, skip_special_tokens=True))
    return texts


def translation_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """SacreBLEU BLEU and chrF (0-100) on detokenized text, one reference each."""
    from hftk.metrics import load_metric

    refs = [[r] for r in references]
    return {
        "bleu": float(load_metric("bleu").compute(predictions=predictions, references=refs)["score"]),
        "chrf": float(load_metric("chrf").compute(predictions=predictions, references=refs)["score"]),
    }


def summarization_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L/Lsum (stemmed) and BLEU, 0-100: the generation task's metrics."""
    from hftk.tasks.generation import compute_generation_metrics

    return compute_generation_metrics(predictions, references)


# ---------------------------------------------------------------------------------------------
# prepare_translation / prepare_summarization
# ---------------------------------------------------------------------------------------------


def _prepare(
    tokenizer: PreTrainedTokenizerBase,
    raw: datasets.DatasetDict,
    to_pairs: Callable[[datasets.Dataset, str], datasets.Dataset],
    *,
    validation_split: str,
    source_prefix: str,
    max_seq_length: int,
    max_target_length: int | None,
    max_train_samples: int | None,
    max_eval_samples: int | None,
    train_sample_seed: int | None,
    metrics: Callable[[list[str], list[str]], dict[str, float]],
    main_metric: str,
    info: Callable[[list[str], list[str]], dict[str, Any]] | None = None,
) -> TaskData:
    if tokenizer.pad_token_id is None:
        raise HftkError("seq2seq fine-tuning needs a tokenizer with a pad token; save the model's tokenizer with one")
    train = take(raw["train"], max_train_samples, seed=train_sample_seed) if "train" in raw else None
    evals = {validation_split: take(raw[validation_split], max_eval_samples)} if validation_split in raw else {}
    if train is None and not evals:
        require_split(raw, "train", f"pass training and/or {validation_split} data")
    # Every split is read and checked before any is tokenized: a bad row fails in a second, not after minutes.
    pairs = {split: to_pairs(ds, split) for split, ds in ({"train": train} if train is not None else {}).items()}
    pairs.update({split: to_pairs(ds, split) for split, ds in evals.items()})
    tokenizer.padding_side = "right"  # DataCollatorForSeq2Seq pads labels on the tokenizer's side
    max_source = effective_max_length(tokenizer, max_seq_length)
    kwargs = dict(
        tokenizer=tokenizer, source_prefix=source_prefix, max_source_length=max_source,
        max_target_length=effective_max_length(tokenizer, max_target_length or max_seq_length),
    )

    def featurize(ds: datasets.Dataset, split: str) -> datasets.Dataset:
        return ds.map(tokenize_pairs, batched=True, remove_columns=ds.column_names, fn_kwargs=kwargs, desc=f"source+target ({split})")

    features = {split: featurize(ds, split) for split, ds in pairs.items()}
    eval_examples = {
        split: pairs[split].add_column("source_input_ids", column(features[split], "input_ids")) for split in evals
    }

    def references(split: str) -> list[str]:
        return column(eval_examples[split], "target")

    def records(split: str, predictions: list[str]) -> list[dict[str, Any]]:
        examples = eval_examples[split]
        return [
            {"source": s, "prediction": p, "reference": r}
            for s, p, r in zip(column(examples, "source"), predictions, column(examples, "target"))
        ]

    def compute_metrics(split: str, predictions: list[str]) -> dict[str, float]:
        if len(predictions) != len(eval_examples[split]):
            raise HftkError(f"got {len(predictions)} generated texts for {len(eval_examples[split])} references")
        return metrics(list(predictions), references(split))

    return TaskData(
        kind="seq2seq_lm",
        train=features.get("train"),
        eval={split: features[split] for split in evals},
        # The model is set by `hftk finetune` once loaded: it makes decoder_input_ids from the labels.
        collator=DataCollatorForSeq2Seq(tokenizer, model=None, label_pad_token_id=IGNORE),
        compute_metrics=compute_metrics,
        main_metric=main_metric,
        eval_examples=eval_examples,
        predictions=records,
        metric_info=(lambda split, predictions: info(list(predictions), references(split))) if info else None,
    )


def prepare_translation(
    tokenizer: PreTrainedTokenizerBase,
    *,
    source_lang: str | None,
    target_lang: str | None,
    dataset_name: str | None = None,
    dataset_config: str | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    validation_split: str = "validation",
    raw: datasets.DatasetDict | None = None,
    source_prefix: str = "",
    max_seq_length: int = 128,
    max_target_length: int | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    train_sample_seed: int | None = None,
    cache_dir: str | None = None,
) -> TaskData:
    """Translation pairs from the `translation` column: source_lang -> target_lang; BLEU and chrF."""
    if not source_lang or not target_lang:
        raise HftkError(
            "translation needs data.source_lang and data.target_lang, the keys of the translation column "
            "(e.g. --set data.source_lang=es --set data.target_lang=en)"
        )
    if source_lang == target_lang:
        raise HftkError(
            f"data.source_lang and data.target_lang are both {source_lang!r}: translation needs two different languages"
        )
    if raw is None:
        raw = load_splits(
            dataset_name=dataset_name, dataset_config=dataset_config,
            data_files={"train": train_file, validation_split: validation_file}, cache_dir=cache_dir,
        )
    return _prepare(
        tokenizer, raw, lambda ds, split: translation_pairs(ds, split, source_lang, target_lang),
        validation_split=validation_split, source_prefix=source_prefix, max_seq_length=max_seq_length,
        max_target_length=max_target_length, max_train_samples=max_train_samples, max_eval_samples=max_eval_samples,
        train_sample_seed=train_sample_seed, metrics=translation_metrics, main_metric="bleu", info=translation_signatures,
    )


def prepare_summarization(
    tokenizer: PreTrainedTokenizerBase,
    *,
    source_column: str = "document",
    target_column: str = "summary",
    dataset_name: str | None = None,
    dataset_config: str | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    validation_split: str = "validation",
    raw: datasets.DatasetDict | None = None,
    source_prefix: str = "",
    max_seq_length: int = 512,
    max_target_length: int | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    train_sample_seed: int | None = None,
    cache_dir: str | None = None,
) -> TaskData:
    """Document -> summary pairs from two named columns; ROUGE (main: rougeL) and BLEU."""
    if raw is None:
        raw = load_splits(
            dataset_name=dataset_name, dataset_config=dataset_config,
            data_files={"train": train_file, validation_split: validation_file}, cache_dir=cache_dir,
        )
    return _prepare(
        tokenizer, raw, lambda ds, split: column_pairs(ds, split, source_column, target_column),
        validation_split=validation_split, source_prefix=source_prefix, max_seq_length=max_seq_length,
        max_target_length=max_target_length, max_train_samples=max_train_samples, max_eval_samples=max_eval_samples,
        train_sample_seed=train_sample_seed, metrics=summarization_metrics, main_metric="rougeL",
    )
