"""Causal-LM fine-tuning on prompt -> target pairs (e.g. bbc_headlines: document -> summary).

Each example becomes `prompt_ids + target_ids + [eos]` where the prompt is
`prompt_template.format(**row)` and the target is `target_prefix + row[target_column]`.
The loss is on the target (and EOS) only: prompt and padding positions get label -100.

Truncation keeps the target whole (up to `max_target_length`) and the template's fixed text
(the "\\nTL;DR:" cue must stay right before the target); only the source field
(`{document}`) is shortened, and from the right: the beginning of a news article (its lead)
is what a headline summarises, and the end is the least useful part to keep.

Prompt and target are tokenised separately and concatenated, so at generation time the
model sees exactly the prompt token ids it was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import torch
from transformers import PreTrainedTokenizerBase

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

DEFAULT_PROMPT_TEMPLATE = "{document}\nTL;DR:"
DEFAULT_TARGET_PREFIX = " "  # byte-level BPE: the first target word gets its usual " word" token
IGNORE = -100


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The pad id to use: the tokenizer's, else EOS (GPT-2 has none; padded positions are masked anyway)."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id
    raise HftkError("the tokenizer has neither a pad nor an EOS token; add an EOS token for generation fine-tuning")


def split_template(prompt_template: str, source_column: str) -> tuple[str, str]:
    """The template's text before and after the `{source_column}` field (the one that gets truncated)."""
    field = "{" + source_column + "}"
    if field not in prompt_template:
        raise HftkError(f"prompt template {prompt_template!r} has no {field} field; put {field} where the source text goes")
    before, after = prompt_template.split(field, 1)
    return before, after


def _format(template: str, row: dict[str, Any]) -> str:
    try:
        return template.format(**row)
    except KeyError as err:
        raise HftkError(f"prompt template field {err.args[0]!r} is not a data column; the data has {sorted(row)}") from err


def build_prompt_ids(
    examples: dict[str, list],
    tokenizer: PreTrainedTokenizerBase,
    *,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    source_column: str = "document",
    max_prompt_tokens: Sequence[int] | int,
) -> list[list[int]]:
    """Token ids of each formatted prompt, the source field cut from the right to fit the budget."""
    before, after = split_template(prompt_template, source_column)
    n = len(examples[source_column])
    rows = [{k: v[i] for k, v in examples.items()} for i in range(n)]
    budgets = [max_prompt_tokens] * n if isinstance(max_prompt_tokens, int) else list(max_prompt_tokens)

    def ids(texts: list[str]) -> list[list[int]]:
        return tokenizer(texts, add_special_tokens=False)["input_ids"] if any(texts) else [[] for _ in texts]

    heads = ids([_format(before, r) for r in rows])
    tails = ids([_format(after, r) for r in rows])
    if any(s is None for s in examples[source_column]):
        raise HftkError(f"data has empty values in column {source_column!r}; drop or fill those rows")
    sources = ids(list(examples[source_column]))
    prompts = []
    for head, source, tail, budget in zip(heads, sources, tails, budgets):
        room = budget - len(head) - len(tail)
        if room < 1:
            raise HftkError(
                f"the prompt template alone takes {len(head) + len(tail)} tokens, leaving no room for the "
                f"{source_column!r} text within {budget}; raise max_seq_length or shorten the template/target"
            )
        prompts.append(head + source[:room] + tail)
    return prompts


def tokenize_prompt_target(
    examples: dict[str, list],
    tokenizer: PreTrainedTokenizerBase,
    *,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    source_column: str = "document",
    target_column: str = "summary",
    target_prefix: str = DEFAULT_TARGET_PREFIX,
    max_seq_length: int = 512,
    max_target_length: int | None = None,
) -> dict[str, list]:
    """Batched map function: input_ids = prompt + target + eos, labels = -100 on the prompt."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise HftkError("generation fine-tuning needs a tokenizer with an EOS token (the model learns to stop)")
    max_target = max_target_length or max_seq_length // 2
    if any(t is None for t in examples[target_column]):
        raise HftkError(f"data has empty values in column {target_column!r}; drop or fill those rows")
    targets = tokenizer([target_prefix + t for t in examples[target_column]], add_special_tokens=False)["input_ids"]
    targets = [t[: max_target - 1] + [eos] for t in targets]
    prompts = build_prompt_ids(
        examples, tokenizer, prompt_template=prompt_template, source_column=source_column,
        max_prompt_tokens=[max_seq_length - len(t) for t in targets],
    )
    input_ids = [p + t for p, t in zip(prompts, targets)]
    return {
        "input_ids": input_ids,
        "attention_mask": [[1] * len(ids) for ids in input_ids],
        "labels": [[IGNORE] * len(p) + t for p, t in zip(prompts, targets)],
    }


@dataclass
class DataCollatorForPromptCompletion:
    """Right-pads input_ids (pad id), attention_mask (0) and labels (-100) to the longest in the batch."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = {"input_ids": [], "attention_mask": [], "labels": []}
        for f in features:
            pad = length - len(f["input_ids"])
            batch["input_ids"].append(list(f["input_ids"]) + [self.pad_token_id] * pad)
            batch["attention_mask"].append(list(f["attention_mask"]) + [0] * pad)
            batch["labels"].append(list(f["labels"]) + [IGNORE] * pad)
        return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}


def prepare_generation_inputs(prompt_ids: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad prompts for batched `model.generate`, so every prompt ends at the last position.

    Pass `pad_token_id=pad_id` to `generate`; the new tokens are `output[:, input_ids.shape[1]:]`.
    """
    length = max(len(p) for p in prompt_ids)
    input_ids = [[pad_id] * (length - len(p)) + list(p) for p in prompt_ids]
    mask = [[0] * (length - len(p)) + [1] * len(p) for p in prompt_ids]
    return {"input_ids": torch.tensor(input_ids, dtype=torch.long), "attention_mask": torch.tensor(mask, dtype=torch.long)}


def decode_generated(tokenizer: PreTrainedTokenizerBase, sequences: torch.Tensor, prompt_length: int) -> list[str]:
    """Text of the newly generated tokens only, stopping at EOS."""
    texts = []
    eos = tokenizer.eos_token_id
    for row in sequences[:, prompt_length:].tolist():
        if eos is not None and eos in row:
            row = row[: row.index(eos)]
        texts.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return texts


def compute_generation_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L/Lsum F-measure (stemmed, as HF's run_summarization), SacreBLEU's BLEU and chrF, all on 0-100."""
    from hftk.metrics import load_metric

    if len(predictions) != len(references):
        raise HftkError(f"got {len(predictions)} generated texts for {len(references)} references")
    rouge = load_metric("rouge").compute(predictions=predictions, references=references, use_stemmer=True)
    result = {k: 100.0 * float(rouge[k]) for k in ("rouge1", "rouge2", "rougeL", "rougeLsum")}
    bleu = load_metric("bleu").compute(predictions=predictions, references=[[r] for r in references])
    result["bleu"] = float(bleu["score"]) if "score" in bleu else 100.0 * float(bleu["bleu"])
    result["chrf"] = float(load_metric("chrf").compute(predictions=predictions, references=[[r] for r in references])["score"])
    return result


def sacrebleu_signatures(predictions: list[str], references: list[str]) -> dict[str, str]:
    """SacreBLEU's signatures of the BLEU and chrF scores (what a paper prints beside them)."""
    from hftk.metrics import load_metric

    refs = [[r] for r in references[:1]]  # the signature depends on the settings and nrefs, not on the texts
    return {
        "sacrebleu_bleu_signature": load_metric("bleu").compute(predictions=predictions[:1], references=refs, return_signature=True)["signature"],
        "sacrebleu_chrf_signature": load_metric("chrf").compute(predictions=predictions[:1], references=refs, return_signature=True)["signature"],
    }


def prepare_generation(
    tokenizer: PreTrainedTokenizerBase,
    *,
    dataset_name: str | None = None,
    dataset_config: str | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    validation_split: str = "validation",
    raw: datasets.DatasetDict | None = None,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    source_column: str = "document",
    target_column: str = "summary",
    target_prefix: str = DEFAULT_TARGET_PREFIX,
    max_seq_length: int = 512,
    max_target_length: int | None = None,
    max_new_tokens: int = 32,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    train_sample_seed: int | None = None,
    cache_dir: str | None = None,
) -> TaskData:
    """Featurise prompt->target pairs; eval examples get `prompt_input_ids` for `generate`.

    Generation prompts are cut to `max_seq_length - max_new_tokens` so prompt + output fit.
    The loop generates for `eval_examples[split]` (in order, via `prepare_generation_inputs`),
    decodes with `decode_generated`, and passes the texts to `compute_metrics(split, texts)`.
    """
    if raw is None:
        raw = load_splits(
            dataset_name=dataset_name, dataset_config=dataset_config,
            data_files={"train": train_file, validation_split: validation_file}, cache_dir=cache_dir,
        )
    train = take(raw["train"], max_train_samples, seed=train_sample_seed) if "train" in raw else None
    evals = {validation_split: take(raw[validation_split], max_eval_samples)} if validation_split in raw else {}
    if train is None and not evals:
        require_split(raw, "train", f"pass training and/or {validation_split} data")
    max_seq_length = effective_max_length(tokenizer, max_seq_length)
    if max_new_tokens >= max_seq_length:
        raise HftkError(f"max_new_tokens ({max_new_tokens}) must be smaller than max_seq_length ({max_seq_length})")
    split_template(prompt_template, source_column)  # fail early on a template without the source field
    kwargs = dict(
        tokenizer=tokenizer, prompt_template=prompt_template, source_column=source_column,
        target_column=target_column, target_prefix=target_prefix, max_seq_length=max_seq_length,
        max_target_length=max_target_length,
    )

    def featurize(ds: datasets.Dataset, split: str) -> datasets.Dataset:
        options = {source_column: "data.source_column", target_column: "data.target_column"}
        require_columns(ds, [source_column, target_column], split, options)
        require_column_types(ds, {source_column: "text", target_column: "text"}, split, options)
        return ds.map(tokenize_prompt_target, batched=True, remove_columns=ds.column_names, fn_kwargs=kwargs,
                      desc=f"prompt+target ({split})")

    def with_prompts(ds: datasets.Dataset) -> datasets.Dataset:
        def add(batch: dict[str, list]) -> dict[str, list]:
            ids = build_prompt_ids(batch, tokenizer, prompt_template=prompt_template, source_column=source_column,
                                   max_prompt_tokens=max_seq_length - max_new_tokens)
            return {"prompt_input_ids": ids}

        return ds.map(add, batched=True, desc="generation prompts")

    eval_features = {split: featurize(ds, split) for split, ds in evals.items()}
    eval_examples = {split: with_prompts(ds) for split, ds in evals.items()}

    def compute_metrics(split: str, predictions: list[str]) -> dict[str, float]:
        return compute_generation_metrics(list(predictions), column(eval_examples[split], target_column))

    def records(split: str, predictions: list[str]) -> list[dict[str, Any]]:
        return [{"prediction": p, "reference": r} for p, r in zip(predictions, column(eval_examples[split], target_column))]

    return TaskData(
        kind="causal_lm",
        train=featurize(train, "train") if train is not None else None,
        eval=eval_features,
        collator=DataCollatorForPromptCompletion(pad_token_id(tokenizer)),
        compute_metrics=compute_metrics,
        main_metric="rougeL",
        eval_examples=eval_examples,
        predictions=records,
        metric_info=lambda split, predictions: sacrebleu_signatures(list(predictions), column(eval_examples[split], target_column)),
    )
