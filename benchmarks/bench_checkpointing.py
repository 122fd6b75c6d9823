"""Peak memory and step time of hftk training with and without gradient checkpointing.

    python benchmarks/bench_checkpointing.py                       # encoder, 8 layers, seq 512
    python benchmarks/bench_checkpointing.py --family gpt --layers 4 --seq 128 --batch 32

Each setting runs in a fresh process (peak RSS, `ru_maxrss`, only grows within a process):
build the model, one untimed step, then `--steps` timed AdamW steps with dropout 0 and the
same random batch. Prints a markdown table. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run_one(args: argparse.Namespace, checkpointing: bool) -> dict:
    import torch

    from hftk.models import HftkBertConfig, HftkBertForMaskedLM, HftkGptConfig, HftkGptForCausalLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = dict(hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.hidden // 64,
                 intermediate_size=4 * args.hidden, max_position_embeddings=max(args.seq, 512),
                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if args.family == "bert":
        model = HftkBertForMaskedLM(HftkBertConfig(vocab_size=30522, **shape))
    else:
        model = HftkGptForCausalLM(HftkGptConfig(vocab_size=50257, use_cache=False, **shape))
    model.train()
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    ids = torch.randint(5, 30000, (args.batch, args.seq))
    labels = ids.clone()
    if args.family == "bert":
        labels[torch.rand(ids.shape) > 0.15] = -100
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def step() -> float:
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    step()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    elapsed = (time.perf_counter() - start) / args.steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_mib": peak / 1024, "model_mib": baseline / 1024, "seconds_per_step": elapsed, "loss": loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=["bert", "gpt"], default="bert")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args, args.one == "on")))
        return
    results = {}
    for setting in ("off", "on"):
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--one", setting], capture_output=True, text=True, check=True)
        results[setting] = json.loads(out.stdout.strip().splitlines()[-1])
    off, on = results["off"], results["on"]
    print(f"`python benchmarks/bench_checkpointing.py {' '.join(sys.argv[1:])}` — {args.family}, {args.layers} layers, "
          f"hidden {args.hidden}, batch {args.batch} × seq {args.seq}, {args.threads} threads; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| gradient checkpointing | peak RSS (MiB) | above model + data (MiB) | s/step | loss |")
    print("|---|---|---|---|---|")
    for name, r in (("off", off), ("on", on)):
        print(f"| {name} | {r['peak_mib']:,.0f} | {r['peak_mib'] - r['model_mib']:,.0f} | {r['seconds_per_step']:.2f} | {r['loss']:.4f} |")
    saved = (off["peak_mib"] - on["peak_mib"]) / (off["peak_mib"] - off["model_mib"])
    print(f"\nCheckpointing saves {off['peak_mib'] - on['peak_mib']:,.0f} MiB of peak RSS "
          f"({saved:.0%} of the training step's own memory), at {on['seconds_per_step'] / off['seconds_per_step']:.2f}× the step time.")


if __name__ == "__main__":
    main()
