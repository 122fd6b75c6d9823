"""Every CPU inference path of a teacher and its student, side by side in one process.

    python benchmarks/bench_inference.py --teacher T --student S \
        --test-file ../shared/data/classification/fine_foods/test.jsonl [--threads 1 2] [--rounds 3]

Paths, for each model:
- `pytorch fp32`: `AutoModelForSequenceClassification.from_pretrained` (sdpa attention);
- `torch.ao int8 (old)`: the format `hftk quantize` wrote before (torch.ao dynamic quantization,
  `load_quantized`);
- `torchao int8`: `hftk quantize --format torchao`, loaded with `from_pretrained` (eager;
  `--compile` adds it under `torch.compile`, timed at batch 32 only, compile time reported);
- `ORT fp32` / `ORT int8`: `hftk export onnx` (model.onnx / model_quantized.onnx) in an
  `onnxruntime.InferenceSession`.
For each: accuracy on the test file (all rows unless --max-test), batch-32 throughput and batch-1
latency on full `--seq`-token inputs at each thread count, size on disk of the weights files, and
load time (from the folder to a ready model/session). Timed rounds alternate between all paths so
that load from other processes hits them alike; medians are printed, with ratios to the teacher's
fp32 PyTorch throughput at the same thread count and each int8's accuracy change from its fp32.
Not a test: it prints a markdown table (--json writes the raw figures).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

import hftk  # noqa: E402,F401
from hftk.export.onnx import FP32_FILE, INT8_FILE, export_onnx, session  # noqa: E402
from hftk.quantize import WEIGHTS, load_quantized, quantize_folder, write_legacy_folder  # noqa: E402

PATHS = ("pytorch fp32", "torch.ao int8 (old)", "torchao int8", "ORT fp32", "ORT int8")


def weights_bytes(folder: Path, names: tuple[str, ...]) -> int:
    return sum((folder / name).stat().st_size for name in names if (folder / name).is_file())


class Path_:
    """One way of running one model: load it, call it on a tokenized batch, report its size."""

    def __init__(self, label: str, folder: Path, files: tuple[str, ...], load):
        self.label, self.folder, self.files, self._load = label, folder, files, load
        self.size_mb = weights_bytes(folder, files) / 1e6
        self.runner, self.load_seconds = None, None

    def ready(self, threads: int) -> None:
        started = time.perf_counter()
        self.runner = self._load(threads)
        seconds = time.perf_counter() - started
        self.load_seconds = seconds if self.load_seconds is None else min(self.load_seconds, seconds)

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self.runner(batch)


def torch_runner(model):
    model.eval()

    @torch.inference_mode()
    def run(batch):
        return model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.float().numpy()

    return run


def ort_runner(path: Path, threads: int):
    sess = session(path, threads)
    names = [i.name for i in sess.get_inputs()]
    return lambda batch: sess.run(["logits"], {k: batch[k] for k in names})[0]


def build_paths(name: str, source: Path, scratch: Path) -> list[Path_]:
    """The five paths of one model; the int8 and ONNX folders are written once into `scratch`."""
    legacy = write_legacy_folder(source, scratch / f"{name}-torch-ao")
    torchao = quantize_folder(source, scratch / f"{name}-torchao", format="torchao")
    onnx = export_onnx(source, scratch / f"{name}-onnx").folder
    fp32_files = tuple(p.name for p in source.glob("*.safetensors"))
    return [
        Path_(f"{name} pytorch fp32", source, fp32_files,
              lambda t: torch_runner(AutoModelForSequenceClassification.from_pretrained(source, attn_implementation="sdpa"))),
        Path_(f"{name} torch.ao int8 (old)", legacy, (WEIGHTS,), lambda t: torch_runner(load_quantized(legacy))),
        Path_(f"{name} torchao int8", torchao, ("model.safetensors",),
              lambda t: torch_runner(AutoModelForSequenceClassification.from_pretrained(torchao))),
        Path_(f"{name} ORT fp32", onnx, (FP32_FILE,), lambda t: ort_runner(onnx / FP32_FILE, t)),
        Path_(f"{name} ORT int8", onnx, (INT8_FILE,), lambda t: ort_runner(onnx / INT8_FILE, t)),
    ]


def accuracy(path: Path_, tokenizer, rows: list[dict], max_length: int, id2label: dict) -> float:
    """Share of rows whose argmax label is right; rows go by length (less padding) in batches of 64."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["text"]))
    correct = 0
    for start in range(0, len(order), 64):
        chunk = [rows[i] for i in order[start : start + 64]]
        batch = tokenizer([r["text"] for r in chunk], truncation=True, max_length=max_length, padding=True, return_tensors="np")
        batch = {k: v.astype(np.int64) for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        predicted = path.logits(batch).argmax(-1).tolist()
        correct += sum(id2label[p] == r["label"] for p, r in zip(predicted, chunk))
    return correct / len(rows)


def seconds(path: Path_, batch: dict, repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        path.logits(batch)
    return (time.perf_counter() - started) / repeats


def compiled_throughput(source: Path, scratch: Path, name: str, inputs: dict, rounds: int) -> dict:
    """torchao int8 under torch.compile at batch 32 (its compile time reported apart)."""
    model = AutoModelForSequenceClassification.from_pretrained(scratch / f"{name}-torchao").eval()
    compiled = torch.compile(model)
    batch = {k: torch.from_numpy(v) for k, v in inputs.items()}
    with torch.inference_mode():
        started = time.perf_counter()
        compiled(**batch)
        compile_seconds = time.perf_counter() - started
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            compiled(**batch)
            times.append(time.perf_counter() - started)
    return {"compile_seconds": compile_seconds, "batch32": 32 / statistics.median(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=None)
    parser.add_argument("--student", default=None)
    parser.add_argument("--test-file", required=True)
    parser.add_argument("--max-test", type=int, default=None, help="score only the first N test rows (0: skip accuracy)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--compile", action="store_true", help="also time torchao int8 under torch.compile (batch 32)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    rows = [json.loads(line) for line in open(args.test_file, encoding="utf-8") if line.strip()][: args.max_test]
    scratch = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    models = {name: Path(path) for name, path in (("teacher", args.teacher), ("student", args.student)) if path}
    paths: list[Path_] = []
    for name, source in models.items():
        started = time.perf_counter()
        paths += build_paths(name, source, scratch)
        print(f"{name}: int8 folders and ONNX export written in {time.perf_counter() - started:.0f} s", flush=True)
    first = next(iter(models.values()))
    tokenizer = AutoTokenizer.from_pretrained(first)
    id2label = AutoModelForSequenceClassification.from_pretrained(first).config.id2label
    vocab = len(tokenizer)
    generator = torch.Generator().manual_seed(0)
    inputs = {size: {"input_ids": torch.randint(1000, vocab, (size, args.seq), generator=generator).numpy(),
                     "attention_mask": np.ones((size, args.seq), dtype=np.int64),
                     "token_type_ids": np.zeros((size, args.seq), dtype=np.int64)} for size in (32, 1)}
    results = {p.label: {"batch32": {}, "batch1_ms": {}} for p in paths}
    for threads in sorted(args.threads):  # accuracy at the fewest threads: the least hurt by other processes
        torch.set_num_threads(threads)
        for p in paths:
            p.ready(threads)
            seconds(p, inputs[32], 1)  # warm-up
        if threads == min(args.threads) and rows:
            for p in paths:
                results[p.label]["accuracy"] = accuracy(p, tokenizer, rows, args.seq, id2label)
                print(f"{p.label}: accuracy {results[p.label]['accuracy']:.3f}", flush=True)
        times32 = {p.label: [] for p in paths}
        times1 = {p.label: [] for p in paths}
        for _ in range(args.rounds):
            for p in paths:
                times32[p.label].append(32 / seconds(p, inputs[32], 1))
                times1[p.label].append(seconds(p, inputs[1], 5) * 1000)
        for p in paths:
            results[p.label]["batch32"][threads] = statistics.median(times32[p.label])
            results[p.label]["batch1_ms"][threads] = statistics.median(times1[p.label])
        print(f"{threads} thread(s) timed", flush=True)
    for p in paths:
        results[p.label].update(size_mb=p.size_mb, load_seconds=p.load_seconds)
    if args.compile:
        torch.set_num_threads(max(args.threads))
        for name, source in models.items():
            results[f"{name} torchao int8 compiled"] = compiled_throughput(source, scratch, name, inputs[32], args.rounds)
    print(table(results, paths, args, rows))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def table(results: dict, paths: list[Path_], args, rows: list) -> str:
    reference = next(p.label for p in paths)  # the teacher's (else the student's) fp32 PyTorch path
    threads = sorted(args.threads)
    head = ["path", f"test accuracy (n={len(rows)})", "Δ vs its fp32 (points)", "size on disk (MB)", "load (s)"]
    for t in threads:
        head += [f"batch-32 seq/s, {t} thr", f"× {reference}, {t} thr", f"batch-1 ms, {t} thr"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in paths:
        r = results[p.label]
        fp32 = results[p.label.split(" ")[0] + " pytorch fp32"].get("accuracy")
        acc = r.get("accuracy")
        cells = [p.label, f"{acc:.3f}" if acc is not None else "–",
                 f"{100 * (acc - fp32):+.1f}" if acc is not None and fp32 is not None else "–",
                 f"{r['size_mb']:.1f}", f"{r['load_seconds']:.2f}"]
        for t in threads:
            cells += [f"{r['batch32'][t]:.1f}", f"{r['batch32'][t] / results[reference]['batch32'][t]:.2f}", f"{r['batch1_ms'][t]:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    for label, r in results.items():
        if label.endswith("compiled"):
            ratio = r["batch32"] / results[reference]["batch32"][max(threads)]
            lines.append(f"\n{label}: batch 32, {max(threads)} threads: {r['batch32']:.1f} seq/s ({ratio:.2f}× {reference}), "
                         f"compile + first call {r['compile_seconds']:.0f} s")
    load = os.getloadavg()
    lines.append(f"\nseq {args.seq}, median of {args.rounds} rounds; load average at the end {load[0]:.1f} / {load[1]:.1f} / "
                 f"{load[2]:.1f} on {os.cpu_count()} cores")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
