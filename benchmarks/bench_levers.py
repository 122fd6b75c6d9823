"""Each speed lever alone: hftk's training step with the lever on vs off, in alternating rounds.

    python benchmarks/bench_levers.py --levers sdpa-bf16 optimizer-foreach threads-1 --dtypes bf16

Levers (each compared with hftk's current default, everything else equal):
- `sdpa-bf16`: the default runs SDPA in float32 under bf16 autocast on CPUs without AMX; the
  variant lets it run in bf16 (PyTorch's bf16 flash-attention kernel).
- `optimizer-foreach` / `optimizer-forloop`: AdamW's multi-tensor or per-parameter step instead
  of `fused=True` (what `hftk.training.loop.build_optimizer` uses).
- `threads-1`: one intra-op thread instead of `--threads`.
- `compile`: `model.compile()` (inductor), compiled during warm-up.

Same shape as benchmarks/bench_models.py. Ratios are variant / default tokens/s (> 1: the
variant is faster). Not a test: prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_models

from hftk.models import attention_hftk

LEVERS = ["sdpa-bf16", "optimizer-foreach", "optimizer-forloop", "threads-1", "compile"]


def optimizer_for(model, lever: str | None):
    if lever == "optimizer-foreach":
        return torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    if lever == "optimizer-forloop":
        return torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=False)
    return torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)


def measure(model, optimizer, batch, steps: int, dtype: str, lever: str | None, threads: int) -> float:
    """tokens/s of `steps` steps with `lever` switched on only for this call."""
    slow_bf16_sdpa = attention_hftk._slow_bf16_sdpa
    if lever == "sdpa-bf16":
        attention_hftk._slow_bf16_sdpa = lambda device: False
    torch.set_num_threads(1 if lever == "threads-1" else threads)
    try:
        return bench_models.train_tokens_per_second(model, optimizer, batch, steps, dtype)
    finally:
        attention_hftk._slow_bf16_sdpa = slow_bf16_sdpa
        torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levers", nargs="*", default=LEVERS[:-1], choices=LEVERS)
    parser.add_argument("--models", nargs="*", default=["encoder", "decoder"], choices=["encoder", "decoder"])
    parser.add_argument("--dtypes", nargs="*", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    generator = torch.Generator().manual_seed(0)
    rows = []
    for name in args.models:
        base, batch = bench_models.hftk_model_and_batch(name, args.batch, args.seq, generator)
        for lever in args.levers:
            for dtype in args.dtypes:
                if lever == "sdpa-bf16" and dtype != "bf16":
                    continue
                default, variant = base, copy.deepcopy(base)
                for model in (default, variant):
                    model.train()
                if lever == "compile":
                    variant.compile()
                optimizers = [optimizer_for(default, None), optimizer_for(variant, lever)]
                for model, optimizer, which in zip((default, variant), optimizers, (None, lever)):
                    measure(model, optimizer, batch, 1, dtype, which, args.threads)  # warm-up (and compile)
                speeds = bench_models.alternate(args.rounds, [
                    lambda: measure(default, optimizers[0], batch, args.steps, dtype, None, args.threads),
                    lambda: measure(variant, optimizers[1], batch, args.steps, dtype, lever, args.threads),
                ])
                rows.append(f"| {name} | {lever} | {dtype} | {speeds[0]:,.0f} | {speeds[1]:,.0f} | "
                            f"**{speeds[1] / speeds[0]:.2f}×** |")
                print(rows[-1], file=sys.stderr, flush=True)
    command = "python benchmarks/bench_levers.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print("\n".join([
        f"`{command.strip()}` — torch {torch.__version__}, {args.threads} threads, median of {args.rounds} "
        f"alternating rounds of {args.steps} steps; 1-min load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after",
        "",
        "| model | lever | dtype | default tokens/s | with lever tokens/s | variant / default |",
        "|---|---|---|---|---|---|",
        *rows,
    ]))


if __name__ == "__main__":
    main()
