"""Where one hftk training step spends its time on this CPU, and how far it is from the roofline.

    python benchmarks/profile_step.py                      # encoder and decoder, fp32 and bf16, 1 thread
    python benchmarks/profile_step.py --models decoder --dtypes bf16 --threads 2

For each model and dtype: a few warm-up steps, then `--steps` steps under `torch.profiler`.
Every profiled op's *self* time goes to one bucket (so the buckets add up to the profiled
total, with nothing counted twice): the ops under the fused LM loss (`linear_cross_entropy`)
and under `optimizer.step` by their ancestor, the rest by name (GEMMs, attention kernels,
norms, elementwise/activations, copies/reshapes, other). "Framework overhead" is the wall
time of the unprofiled step minus the profiled ops' time (Python, autograd bookkeeping,
dispatch). FLOPs per step come from `torch.utils.flop_counter.FlopCounterMode` (plus in-place `addmm_`); the peak is
*measured* here as the throughput of a large matmul in the same dtype and thread count.

Same shape as benchmarks/bench_models.py (4 layers, hidden 256, 4 heads, intermediate 1024,
seq 128, batch 32, dropout 0, SDPA, AdamW). Not a test: prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode, mm_flop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_models

from hftk.models import modeling_hftk_bert, modeling_hftk_gpt

BUCKETS = ["LM head + loss", "optimizer", "GEMM", "attention", "norms", "elementwise / activations",
           "copies / reshapes / indexing", "other ops", "framework overhead"]
GEMM = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear", "aten::_mkldnn")
ATTENTION = ("scaled_dot_product", "flash_attention", "_efficient_attention", "aten::_softmax")
NORMS = ("layer_norm", "rms_norm")
ELEMENTWISE = ("gelu", "silu", "aten::mul", "aten::add", "aten::sub", "aten::div", "aten::neg", "aten::cos",
               "aten::sin", "aten::sum", "aten::fill_", "aten::zero_", "aten::tanh", "aten::pow", "aten::rsqrt",
               "aten::mean", "aten::where", "aten::ne", "aten::threshold", "aten::masked_fill", "aten::log",
               "aten::exp", "aten::lt", "aten::any", "aten::sqrt")
COPIES = ("copy_", "aten::cat", "aten::clone", "aten::contiguous", "aten::to", "aten::_to_copy", "index",
          "aten::nonzero", "aten::masked_select", "aten::gather", "aten::scatter", "aten::embedding",
          "aten::empty", "aten::view", "aten::reshape", "aten::transpose", "aten::t", "aten::slice",
          "aten::select", "aten::unsqueeze", "aten::expand", "aten::as_strided", "aten::unbind", "aten::chunk",
          "aten::split", "aten::permute", "aten::detach", "aten::_unsafe_view", "aten::resize_", "aten::zeros")


@contextmanager
def labelled_loss():
    """Run the fused LM loss under a profiler label, so its ops can be told from the body's."""
    original = modeling_hftk_bert.linear_cross_entropy

    def labelled(*args, **kwargs):
        with record_function("hftk::lm_head_loss"):
            return original(*args, **kwargs)

    modeling_hftk_bert.linear_cross_entropy = modeling_hftk_gpt.linear_cross_entropy = labelled
    try:
        yield
    finally:
        modeling_hftk_bert.linear_cross_entropy = modeling_hftk_gpt.linear_cross_entropy = original


def bucket_of(event) -> str:
    ancestor = event.cpu_parent
    while ancestor is not None:
        if ancestor.name == "hftk::lm_head_loss":
            return "LM head + loss"
        if ancestor.name.startswith("Optimizer.step"):
            return "optimizer"
        ancestor = ancestor.cpu_parent
    name = event.name
    for bucket, patterns in (("attention", ATTENTION), ("GEMM", GEMM), ("norms", NORMS),
                             ("elementwise / activations", ELEMENTWISE), ("copies / reshapes / indexing", COPIES)):
        if any(p in name for p in patterns):
            return bucket
    return "other ops"


def addmm_inplace_flop(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """FlopCounterMode has no formula for in-place `addmm_`, which the fused loss's weight gradient uses."""
    return mm_flop(a_shape, b_shape)


def autocast(dtype: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()


def step(model, optimizer, batch, dtype: str) -> None:
    with autocast(dtype):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def measured_peak(dtype: str, size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a large square matmul: what this machine's BLAS reaches (best of `repeats`)."""
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    a, b = torch.randn(size, size, dtype=torch_dtype), torch.randn(size, size, dtype=torch_dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def profile_model(name: str, model, batch, dtype: str, steps: int, warmup: int) -> dict:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    with labelled_loss():
        for _ in range(warmup):
            step(model, optimizer, batch, dtype)
        with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: addmm_inplace_flop}) as counter:
            step(model, optimizer, batch, dtype)
        flops = counter.get_total_flops()
        start = time.perf_counter()
        for _ in range(steps):
            step(model, optimizer, batch, dtype)
        wall = (time.perf_counter() - start) / steps
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                step(model, optimizer, batch, dtype)
    totals = dict.fromkeys(BUCKETS, 0.0)
    top: dict[str, float] = {}
    for event in prof.events():
        if event.device_type.name != "CPU" or event.name.startswith(("ProfilerStep", "hftk::", "Optimizer.")):
            continue
        seconds = event.self_cpu_time_total / 1e6 / steps
        totals[bucket_of(event)] += seconds
        top[event.name] = top.get(event.name, 0.0) + seconds
    profiled = sum(totals.values())
    # The profiler's own cost inflates `profiled`; scale the op buckets to the unprofiled wall time
    # only if they exceed it, else the difference is the framework's own overhead.
    if profiled > wall:
        totals = {k: v * wall / profiled for k, v in totals.items()}
        totals["framework overhead"] = 0.0
    else:
        totals["framework overhead"] = wall - profiled
    tokens = batch["input_ids"].numel()
    info = dict(name=name, dtype=dtype, wall=wall, flops=flops, tokens=tokens, totals=totals,
                top=sorted(top.items(), key=lambda kv: -kv[1])[:8])
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["encoder", "decoder"], choices=["encoder", "decoder"])
    parser.add_argument("--dtypes", nargs="*", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    generator = torch.Generator().manual_seed(0)
    results = []
    for name in args.models:
        model, batch = bench_models.hftk_model_and_batch(name, args.batch, args.seq, generator)
        for dtype in args.dtypes:
            results.append(profile_model(name, model, batch, dtype, args.steps, args.warmup))
            print(f"{name} {dtype}: {results[-1]['wall'] * 1e3:.0f} ms/step", file=sys.stderr, flush=True)
    peaks = {dtype: measured_peak(dtype) for dtype in args.dtypes}

    command = "python benchmarks/profile_step.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        f"`{command.strip()}` — torch {torch.__version__}, {args.threads} thread(s) on {os.cpu_count()} cores, "
        f"batch {args.batch} × seq {args.seq}, {args.steps} profiled steps; 1-min load average {load_before:.1f} "
        f"before, {os.getloadavg()[0]:.1f} after",
        "",
        "| step | " + " | ".join(f"{r['name']} {r['dtype']}" for r in results) + " |",
        "|---|" + "---|" * len(results),
        "| wall time per step | " + " | ".join(f"{r['wall'] * 1e3:,.0f} ms" for r in results) + " |",
    ]
    for bucket in BUCKETS:
        lines.append(f"| {bucket} | " + " | ".join(
            f"{r['totals'][bucket] * 1e3:,.0f} ms ({r['totals'][bucket] / r['wall']:.0%})" for r in results) + " |")
    lines += [
        "| GFLOP per step (FlopCounterMode) | " + " | ".join(f"{r['flops'] / 1e9:,.1f}" for r in results) + " |",
        "| achieved GFLOP/s | " + " | ".join(f"{r['flops'] / r['wall'] / 1e9:,.0f}" for r in results) + " |",
        "| measured matmul peak, GFLOP/s (2048³) | " + " | ".join(f"{peaks[r['dtype']] / 1e9:,.0f}" for r in results) + " |",
        "| fraction of that peak | " + " | ".join(f"{r['flops'] / r['wall'] / peaks[r['dtype']]:.0%}" for r in results) + " |",
        "| roofline step time at that peak | " + " | ".join(f"{r['flops'] / peaks[r['dtype']] * 1e3:,.0f} ms" for r in results) + " |",
        "",
        "Largest ops by self time (ms per step):",
        "",
    ]
    for r in results:
        lines.append(f"- {r['name']} {r['dtype']}: " + ", ".join(f"`{n}` {t * 1e3:,.0f}" for n, t in r["top"]))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
