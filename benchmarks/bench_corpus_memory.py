"""How do memory and disk of `hftk pretrain`'s data preparation grow with the corpus?

The cached path loads the corpus with `datasets` (an Arrow copy of the text), trains the
tokenizer on the whole `text` column (held in memory as Python strings), then tokenizes and
packs into a second Arrow cache. This script builds corpora of growing size by repeating the
texts of a source folder (default ../shared/data/pretrain), runs a 1-step `hftk pretrain` of a
tiny decoder on each in a fresh child process, and prints its peak RSS, the size of the
`datasets` cache it wrote and the wall time, as a markdown table.

With `--paths streaming` the same runs use `data.streaming: true` (the corpus read, tokenized
and packed on the fly; the tokenizer trained on the stream's first lines; a small validation file
cut from the source). `--steps` > 1 also measures training throughput (`tokens_per_second` of
metrics.json: the training loop only, so the streaming path pays its on-the-fly tokenization
there, the cached path paid it before the loop).

    python benchmarks/bench_corpus_memory.py --sizes-mb 10 30 100
    python benchmarks/bench_corpus_memory.py --sizes-mb 10 100 --tokenizer runs/pretrain-gpt   # skip tokenizer training
    python benchmarks/bench_corpus_memory.py --sizes-mb 10 100 1000 --paths streaming
    python benchmarks/bench_corpus_memory.py --sizes-mb 10 --paths cached streaming --steps 60 --model default
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
if code.returncode:
    sys.stderr.write(code.stderr[-3000:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code.returncode)
"""


def build_corpus(source: Path, size_mb: float, path: Path) -> int:
    """Repeat the source texts (sorted, whole files) until the file holds `size_mb` MB."""
    texts = [p.read_text(encoding="utf-8") for p in sorted(source.glob("*.txt"))]
    target, written = int(size_mb * 1e6), 0
    with path.open("w", encoding="utf-8") as handle:
        while written < target:
            for text in texts:
                chunk = text[: target - written]
                handle.write(chunk if chunk.endswith("\n") else chunk + "\n")
                written += len(chunk.encode("utf-8")) + (0 if chunk.endswith("\n") else 1)
                if written >= target:
                    break
    return path.stat().st_size


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


TINY_MODEL = [
    "model.config.hidden_size=32", "model.config.num_hidden_layers=1", "model.config.num_attention_heads=2",
    "model.config.intermediate_size=64",
]
DEFAULT_MODEL = [  # pretrain-default's encoder size, as a decoder
    "model.config.hidden_size=256", "model.config.num_hidden_layers=4", "model.config.num_attention_heads=4",
    "model.config.intermediate_size=1024",
]


def measure(
    corpus: Path, work: Path, tokenizer: str | None, *, streaming: bool = False, steps: int = 1, model: str = "tiny",
    validation: Path | None = None,
) -> dict:
    cache = work / "hf-datasets-cache"
    shutil.rmtree(cache, ignore_errors=True)
    sets = [
        f"data.train_files={corpus}", *(TINY_MODEL if model == "tiny" else DEFAULT_MODEL), "data.max_seq_length=128",
        f"training.max_steps={steps}", "training.max_time_minutes=null", "training.save_steps=null", "training.eval_steps=null",
        "training.max_eval_batches=1", "training.report_to=[]", "training.num_threads=1", "tokenizer.vocab_size=8192",
        f"training.logging_steps={max(1, steps // 2)}",
    ]
    if tokenizer:
        sets.append(f"tokenizer.name_or_path={tokenizer}")
    if streaming:
        sets += ["data.streaming=true", f"data.validation_files={validation}"]
    cmd = [sys.executable, "-m", "hftk", "pretrain", "pretrain-gpt", "-o", str(work / "run"), "--overwrite"]
    cmd += [arg for s in sets for arg in ("--set", s)]
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, *cmd], capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - started
    peak_kb, code = (int(x) for x in out.stdout.split())
    if code:
        raise SystemExit(f"hftk pretrain failed on {corpus}:\n{out.stderr}")
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    # Steady-state throughput: the last logging window (the first one includes filling the shuffle buffer).
    windows = [r["tokens_per_second"] for r in json.loads((work / "run" / "log_history.json").read_text()) if "tokens_per_second" in r]
    return {
        "peak_rss_mb": peak_kb / 1024,
        "cache_mb": folder_size(cache) / 1e6 if cache.exists() else 0.0,
        "wall_s": wall,
        "tokens_seen": metrics["tokens_seen"],
        "tokens_per_second": metrics["tokens_per_second"],
        "last_window_tokens_per_second": windows[-1] if windows else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[10, 30, 100])
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data" / "pretrain")
    parser.add_argument("--tokenizer", help="a saved tokenizer: measure without tokenizer training")
    parser.add_argument("--paths", nargs="+", choices=["cached", "streaming"], default=["cached"])
    parser.add_argument("--steps", type=int, default=1, help="training steps (batch 32 x 128 tokens); >1 to measure tokens/s")
    parser.add_argument("--model", choices=["tiny", "default"], default="tiny", help="tiny: 1 layer of 32; default: 4 layers of 256")
    args = parser.parse_args()
    print("| corpus | path | peak RSS | datasets cache | wall | training tokens/s (whole loop / last window) |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes_mb:
        with tempfile.TemporaryDirectory(prefix="hftk-corpus-") as tmp:
            work = Path(tmp)
            corpus_bytes = build_corpus(args.source, size, work / "corpus.txt")
            build_corpus(args.source, 0.2, work / "validation.txt")
            for path in args.paths:
                row = measure(
                    work / "corpus.txt", work, args.tokenizer, streaming=path == "streaming", steps=args.steps,
                    model=args.model, validation=work / "validation.txt",
                )
                speed = f"{row['tokens_per_second']:,.0f} / {row['last_window_tokens_per_second'] or 0:,.0f}"
                print(
                    f"| {corpus_bytes / 1e6:.0f} MB | {path} | {row['peak_rss_mb']:,.0f} MiB | {row['cache_mb']:,.0f} MB "
                    f"| {row['wall_s']:.0f} s | {speed} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
