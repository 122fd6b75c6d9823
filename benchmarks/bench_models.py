"""Training and generation speed of hftk's models against transformers' BERT and GPT-2 at one shape.

    python benchmarks/bench_models.py            # full run, a few minutes on 2 CPU cores
    python benchmarks/bench_models.py --quick    # fewer rounds, batch-1 generation only
    python benchmarks/bench_models.py --compile --only encoder decoder   # training under torch.compile

Both sides get the same shape (4 layers, hidden 256, 4 heads, intermediate 1024, seq 128,
batch 32), dropout 0, SDPA attention, AdamW, and the same random batch. hftk runs its
default pretraining configuration (pre-LN, no biases in attention/FFN, sparse MLM prediction
for the encoder, RoPE for the decoder); BERT and GPT-2 run theirs. Runs alternate between the
two models, round by round, so that load from other processes hits both alike; the table
reports the median over rounds. Not a test: it prints a markdown table (and can write it).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

import hftk  # noqa: E402,F401
from hftk.models import HftkBertConfig, HftkBertForMaskedLM, HftkGptConfig, HftkGptForCausalLM  # noqa: E402

SHAPE = dict(layers=4, hidden=256, heads=4, intermediate=1024)
BERT_VOCAB, GPT_VOCAB = 30522, 50257


@dataclass
class Pair:
    """One comparison: hftk's model and the transformers reference, trained (or run) identically."""

    name: str
    ours: torch.nn.Module
    theirs: torch.nn.Module
    batch: dict[str, torch.Tensor]


def hftk_encoder(seq: int) -> HftkBertForMaskedLM:
    config = HftkBertConfig(
        vocab_size=BERT_VOCAB,
        hidden_size=SHAPE["hidden"],
        num_hidden_layers=SHAPE["layers"],
        num_attention_heads=SHAPE["heads"],
        intermediate_size=SHAPE["intermediate"],
        max_position_embeddings=max(seq, 512),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="sdpa",
    )
    return HftkBertForMaskedLM(config)


def bert(seq: int) -> BertForMaskedLM:
    config = BertConfig(
        vocab_size=BERT_VOCAB,
        hidden_size=SHAPE["hidden"],
        num_hidden_layers=SHAPE["layers"],
        num_attention_heads=SHAPE["heads"],
        intermediate_size=SHAPE["intermediate"],
        max_position_embeddings=max(seq, 512),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="sdpa",
    )
    return BertForMaskedLM(config)


def hftk_decoder(seq: int) -> HftkGptForCausalLM:
    config = HftkGptConfig(
        vocab_size=GPT_VOCAB,
        hidden_size=SHAPE["hidden"],
        num_hidden_layers=SHAPE["layers"],
        num_attention_heads=SHAPE["heads"],
        intermediate_size=SHAPE["intermediate"],
        max_position_embeddings=max(seq + 160, 1024),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="sdpa",
    )
    return HftkGptForCausalLM(config)


def gpt2(seq: int) -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=GPT_VOCAB,
        n_embd=SHAPE["hidden"],
        n_layer=SHAPE["layers"],
        n_head=SHAPE["heads"],
        n_inner=SHAPE["intermediate"],
        n_positions=max(seq + 160, 1024),
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        attn_implementation="sdpa",
    )
    return GPT2LMHeadModel(config)


def mlm_batch(batch: int, seq: int, probability: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Packed text (no padding): `probability` of the tokens become [MASK] and carry labels."""
    ids = torch.randint(1000, BERT_VOCAB, (batch, seq), generator=generator)
    chosen = torch.rand(batch, seq, generator=generator) < probability
    labels = ids.masked_fill(~chosen, -100)
    return {"input_ids": ids.masked_fill(chosen, 103), "labels": labels}


def clm_batch(batch: int, seq: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, GPT_VOCAB, (batch, seq), generator=generator)
    return {"input_ids": ids, "labels": ids}


def autocast(dtype: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()


def train_tokens_per_second(model, optimizer, batch, steps: int, dtype: str) -> float:
    tokens = batch["input_ids"].numel() * steps
    start = time.perf_counter()
    for _ in range(steps):
        with autocast(dtype):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return tokens / (time.perf_counter() - start)


@torch.no_grad()
def generate_tokens_per_second(model, prompt: torch.Tensor, new_tokens: int) -> float:
    start = time.perf_counter()
    out = model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        use_cache=True,
        pad_token_id=0,
    )
    elapsed = time.perf_counter() - start
    assert out.shape[1] == prompt.shape[1] + new_tokens
    return prompt.shape[0] * new_tokens / elapsed


def alternate(rounds: int, measure_ours, measure_theirs) -> tuple[float, float]:
    """Median of `rounds` measurements each, taking turns (ours first on even rounds)."""
    ours, theirs = [], []
    for r in range(rounds):
        order = [(measure_ours, ours), (measure_theirs, theirs)]
        for measure, results in order if r % 2 == 0 else reversed(order):
            results.append(measure())
    return statistics.median(ours), statistics.median(theirs)


def bench_training(
    pair: Pair, dtype: str, steps: int, rounds: int, warmup: int, compile: bool = False
) -> tuple[float, float]:
    optimizers = {}
    for side in (pair.ours, pair.theirs):
        side.train()
        if compile:
            side.compile()  # in place, as hftk's `training.torch_compile`; compiles during warm-up
        optimizers[id(side)] = torch.optim.AdamW(side.parameters(), lr=1e-4)
        train_tokens_per_second(side, optimizers[id(side)], pair.batch, warmup, dtype)
    return alternate(
        rounds,
        lambda: train_tokens_per_second(pair.ours, optimizers[id(pair.ours)], pair.batch, steps, dtype),
        lambda: train_tokens_per_second(pair.theirs, optimizers[id(pair.theirs)], pair.batch, steps, dtype),
    )


def bench_generation(ours, theirs, batch: int, prompt_length: int, new_tokens: int, rounds: int) -> tuple[float, float]:
    generator = torch.Generator().manual_seed(batch)
    prompt = torch.randint(0, GPT_VOCAB, (batch, prompt_length), generator=generator)
    for side in (ours, theirs):
        side.eval()
        generate_tokens_per_second(side, prompt, 8)  # warm-up
    return alternate(
        rounds,
        lambda: generate_tokens_per_second(ours, prompt, new_tokens),
        lambda: generate_tokens_per_second(theirs, prompt, new_tokens),
    )


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per timed training run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed runs per model (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per model and dtype")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--mlm-probability", type=float, default=0.15)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--generation-batches", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--dtypes", nargs="*", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--only", choices=["encoder", "decoder", "generation"], nargs="*", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2 steps x 3 rounds, batch-1 generation of 64 tokens")
    parser.add_argument("--output", help="also write the markdown table to this file")
    parser.add_argument("--compile", action="store_true", help="torch.compile both sides for training (not generation)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.rounds, args.generation_batches, args.new_tokens = 2, 3, [1], 64
    parts = set(args.only or ["encoder", "decoder", "generation"])

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    load_before = os.getloadavg()[0]
    generator = torch.Generator().manual_seed(0)
    rows = []

    def row(what: str, dtype: str, ours: float, theirs: float, reference: str, target: float) -> None:
        ratio = ours / theirs
        rows.append(
            f"| {what} | {dtype} | {ours:,.0f} | {theirs:,.0f} ({reference}) | **{ratio:.2f}×** | "
            f"≥ {target:.1f}× {'✓' if ratio >= target else '✗'} |"
        )
        print(rows[-1], file=sys.stderr, flush=True)

    if "encoder" in parts:
        torch.manual_seed(0)
        pair = Pair("encoder", hftk_encoder(args.seq), bert(args.seq),
                    mlm_batch(args.batch, args.seq, args.mlm_probability, generator))
        for dtype in args.dtypes:
            ours, theirs = bench_training(pair, dtype, args.steps, args.rounds, args.warmup, args.compile)
            row("MLM training, tokens/s", dtype, ours, theirs, "BertForMaskedLM", 2.0)
        del pair
    if "decoder" in parts or "generation" in parts:
        torch.manual_seed(0)
        ours_model, theirs_model = hftk_decoder(args.seq), gpt2(args.seq)
        if "decoder" in parts:
            pair = Pair("decoder", ours_model, theirs_model, clm_batch(args.batch, args.seq, generator))
            for dtype in args.dtypes:
                ours, theirs = bench_training(pair, dtype, args.steps, args.rounds, args.warmup, args.compile)
                row("causal LM training, tokens/s", dtype, ours, theirs, "GPT2LMHeadModel", 1.3)
        if "generation" in parts:
            for batch in args.generation_batches:
                ours, theirs = bench_generation(ours_model, theirs_model, batch, 16, args.new_tokens, args.rounds)
                row(f"greedy generation, batch {batch}, {args.new_tokens} new tokens, tokens/s", "fp32",
                    ours, theirs, "GPT2LMHeadModel", 1.0)

    command = "python benchmarks/bench_models.py " + " ".join(sys.argv[1:] if argv is None else argv)
    table = "\n".join(
        [
            f"`{command.strip()}` — torch {torch.__version__}, {args.threads} threads on {os.cpu_count()} cores "
            f"({platform.machine()}), median of {args.rounds} alternating rounds of {args.steps} steps "
            f"(batch {args.batch} × seq {args.seq}, AdamW{', torch.compile' if args.compile else ''}); 1-min load average {load_before:.1f} before, "
            f"{os.getloadavg()[0]:.1f} after (other processes on the machine slow both sides)",
            "",
            "| workload | dtype | hftk | transformers | ratio | target |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            f"Shape: {SHAPE['layers']} layers, hidden {SHAPE['hidden']}, {SHAPE['heads']} heads, intermediate "
            f"{SHAPE['intermediate']}, dropout 0, SDPA, MLM masking {args.mlm_probability:.0%}. "
            "hftk: default config (pre-LN, no attention/FFN biases, tied embeddings, final norm; encoder: learned "
            "positions, sparse MLM prediction; decoder: RoPE). BERT/GPT-2: their defaults (post-LN BERT with "
            "biases and dense MLM head; GPT-2 pre-LN with biases, learned positions, tanh GELU).",
        ]
    )
    print(table)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(table + "\n")
    return table


if __name__ == "__main__":
    main()
