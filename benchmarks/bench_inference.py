"""Teacher vs distilled student, fp32 vs int8, side by side in one process (CPU inference).

    python benchmarks/bench_inference.py --teacher runs/ff-teacher --student runs/ff-student \
        --test-file ../shared/data/classification/fine_foods/test.jsonl [--threads 2] [--rounds 5]

For each of teacher fp32, teacher int8, student fp32, student int8 (int8 = `hftk quantize`,
dynamic int8 Linear layers): test accuracy, throughput at batch 32 and latency at batch 1 on
full 128-token inputs, parameters, size on disk (the weights file) and the bytes of the Linear
weights. Timed rounds alternate between the four models so that load from other processes
hits them alike; medians are reported. Not a test: it prints a markdown table (--json writes it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

import hftk  # noqa: E402,F401
from hftk.quantize import WEIGHTS, load_quantized, quantize_folder  # noqa: E402


def weights_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix == ".safetensors" or p.name == WEIGHTS)


def linear_bytes(model: torch.nn.Module) -> int:
    """Bytes of the Linear weight matrices as stored: fp32 tensors, or int8 packed weights."""
    total = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            total += module.weight.numel() * module.weight.element_size()
        elif "quantized" in type(module).__module__ and hasattr(module, "weight") and callable(module.weight):
            total += module.weight().numel()  # int8: one byte per weight (+ its scales)
    return total


@torch.inference_mode()
def accuracy(model, tokenizer, rows: list[dict], max_length: int) -> float:
    correct = 0
    for start in range(0, len(rows), 64):
        chunk = rows[start : start + 64]
        batch = tokenizer([r["text"] for r in chunk], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        predicted = model(**batch).logits.argmax(-1).tolist()
        correct += sum(model.config.id2label[p] == r["label"] for p, r in zip(predicted, chunk))
    return correct / len(rows)


@torch.inference_mode()
def seconds(model, batch: dict, repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        model(**batch)
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=None)
    parser.add_argument("--student", default=None)
    parser.add_argument("--test-file", required=True)
    parser.add_argument("--max-test", type=int, default=None, help="score only the first N test rows (0: skip accuracy)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in open(args.test_file, encoding="utf-8") if line.strip()][: args.max_test]
    scratch = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    models, folders = {}, {}
    for name, path in (("teacher", args.teacher), ("student", args.student)):
        if path is None:
            continue
        models[f"{name} fp32"] = AutoModelForSequenceClassification.from_pretrained(path, attn_implementation="sdpa").eval()
        folders[f"{name} fp32"] = Path(path)
        folders[f"{name} int8"] = quantize_folder(path, scratch / name)
        models[f"{name} int8"] = load_quantized(folders[f"{name} int8"])
    first = next(iter(folders.values()))
    tokenizer = AutoTokenizer.from_pretrained(first)
    vocab = next(iter(models.values())).config.vocab_size
    generator = torch.Generator().manual_seed(0)
    inputs = {size: {"input_ids": torch.randint(1000, vocab, (size, args.seq), generator=generator),
                     "attention_mask": torch.ones(size, args.seq, dtype=torch.long)} for size in (32, 1)}
    results = {}
    for name, model in models.items():
        results[name] = {
            "accuracy": accuracy(model, tokenizer, rows, args.seq) if rows else float("nan"),
            "parameters": sum(p.numel() for p in models[name.replace("int8", "fp32")].parameters()),
            "weights_mb": weights_bytes(folders[name]) / 1e6,
            "linear_mb": linear_bytes(model) / 1e6,
            "batch32": [], "batch1": [],
        }
        seconds(model, inputs[32], 1)  # warm-up
    for _ in range(args.rounds):
        for name, model in models.items():
            results[name]["batch32"].append(32 / seconds(model, inputs[32], 1))
            results[name]["batch1"].append(seconds(model, inputs[1], 5) * 1000)
    reference = "teacher fp32" if "teacher fp32" in results else next(iter(results))
    teacher32 = statistics.median(results[reference]["batch32"])
    lines = [
        f"| model | test accuracy (n={len(rows)}) | batch-32 throughput (seq/s) | × {reference} | batch-1 latency (ms) | parameters | weights on disk (MB) | Linear weights (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        r["batch32_median"] = statistics.median(r["batch32"])
        r["batch1_median_ms"] = statistics.median(r["batch1"])
        lines.append(
            f"| {name} | {r['accuracy']:.3f} | {r['batch32_median']:.1f} | {r['batch32_median'] / teacher32:.2f} | "
            f"{r['batch1_median_ms']:.1f} | {r['parameters'] / 1e6:.1f} M | {r['weights_mb']:.1f} | {r['linear_mb']:.1f} |"
        )
    load = os.getloadavg()
    lines.append(f"\n{args.threads} threads, seq {args.seq}, median of {args.rounds} rounds; load average during the run {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} cores")
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
