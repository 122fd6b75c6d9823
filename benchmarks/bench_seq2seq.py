"""Training and beam-search speed of hftk_seq2seq against transformers' BART at one shape.

    python benchmarks/bench_seq2seq.py             # fp32 and bf16 training, beam-4 generation
    python benchmarks/bench_seq2seq.py --quick     # fewer rounds
    python benchmarks/bench_seq2seq.py --out benchmarks/RESULTS-seq2seq.md

Both sides get the same shape (4 encoder + 4 decoder layers, hidden 256, 4 heads, feed-forward
1024, shared 32k vocabulary tied to the output), dropout 0, SDPA attention, AdamW and the same
random batch (source 128, target 64 tokens, batch 16). hftk runs its default configuration
(pre-LN, sinusoidal positions, no biases in attention/FFN, the fused chunked LM loss); BART runs
its own (post-LN, learned positions, biases, full logits then cross-entropy). Runs alternate
between the two models round by round, so load from other processes hits both alike; the table
reports the median over rounds. Training tokens/s counts source + target tokens; generation
tokens/s counts the new tokens of the returned sequences (beam 4, min = max new tokens, so
both generate exactly as many). Not a test: it prints a markdown table (and can write it).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from contextlib import nullcontext

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import BartConfig, BartForConditionalGeneration  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

import hftk  # noqa: E402,F401
from hftk.models import HftkSeq2SeqConfig, HftkSeq2SeqForConditionalGeneration  # noqa: E402

SHAPE = dict(layers=4, hidden=256, heads=4, intermediate=1024, vocab=32000)
SOURCE, TARGET, BATCH = 128, 64, 16
PAD, BOS, EOS = 1, 0, 2


def hftk_model() -> HftkSeq2SeqForConditionalGeneration:
    config = HftkSeq2SeqConfig(
        vocab_size=SHAPE["vocab"],
        hidden_size=SHAPE["hidden"],
        num_hidden_layers=SHAPE["layers"],
        num_attention_heads=SHAPE["heads"],
        intermediate_size=SHAPE["intermediate"],
        max_position_embeddings=512,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        decoder_start_token_id=EOS,
        attn_implementation="sdpa",
    )
    return HftkSeq2SeqForConditionalGeneration(config)


def bart_model() -> BartForConditionalGeneration:
    config = BartConfig(
        vocab_size=SHAPE["vocab"],
        d_model=SHAPE["hidden"],
        encoder_layers=SHAPE["layers"],
        decoder_layers=SHAPE["layers"],
        encoder_attention_heads=SHAPE["heads"],
        decoder_attention_heads=SHAPE["heads"],
        encoder_ffn_dim=SHAPE["intermediate"],
        decoder_ffn_dim=SHAPE["intermediate"],
        max_position_embeddings=512,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        decoder_start_token_id=EOS,
        forced_eos_token_id=None,
        attn_implementation="sdpa",
    )
    return BartForConditionalGeneration(config)


def train_batch(generator: torch.Generator) -> dict[str, torch.Tensor]:
    source = torch.randint(3, SHAPE["vocab"], (BATCH, SOURCE), generator=generator)
    labels = torch.randint(3, SHAPE["vocab"], (BATCH, TARGET), generator=generator)
    return {"input_ids": source, "attention_mask": torch.ones_like(source), "labels": labels}


def autocast(dtype: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()


def train_tokens_per_second(model, optimizer, batch, steps: int, dtype: str) -> float:
    tokens = (batch["input_ids"].numel() + batch["labels"].numel()) * steps
    start = time.perf_counter()
    for _ in range(steps):
        with autocast(dtype):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return tokens / (time.perf_counter() - start)


@torch.no_grad()
def beam_tokens_per_second(model, source: torch.Tensor, new_tokens: int) -> float:
    start = time.perf_counter()
    out = model.generate(
        source,
        attention_mask=torch.ones_like(source),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        num_beams=4,
        do_sample=False,
        early_stopping=False,
        length_penalty=1.0,
    )
    seconds = time.perf_counter() - start
    return (out.shape[0] * (out.shape[1] - 1)) / seconds  # minus the decoder start token


def median_pair(measure_ours, measure_theirs, rounds: int) -> tuple[float, float]:
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(measure_ours())
        theirs.append(measure_theirs())
    return statistics.median(ours), statistics.median(theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and steps")
    parser.add_argument("--out", help="also write the markdown table to this file")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds, steps, new_tokens = (2, 1, 16) if args.quick else (5, 3, 32)

    torch.manual_seed(0)
    ours, theirs = hftk_model().train(), bart_model().train()
    parameters = (sum(p.numel() for p in ours.parameters()), sum(p.numel() for p in theirs.parameters()))
    batch = train_batch(torch.Generator().manual_seed(0))
    rows = []
    for dtype in ("fp32", "bf16"):
        optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-4) for m in (ours, theirs)]
        for model, optimizer in zip((ours, theirs), optimizers):  # warm-up: allocator, optimizer state
            train_tokens_per_second(model, optimizer, batch, 1, dtype)
        a, b = median_pair(
            lambda: train_tokens_per_second(ours, optimizers[0], batch, steps, dtype),
            lambda: train_tokens_per_second(theirs, optimizers[1], batch, steps, dtype),
            rounds,
        )
        rows.append((f"training step, {dtype}, batch {BATCH} x ({SOURCE} + {TARGET}) tokens", a, b))
        print(f"{rows[-1][0]}: {a:,.0f} vs {b:,.0f} tokens/s ({a / b:.2f}x)", flush=True)

    ours.eval()
    theirs.eval()
    source = torch.randint(3, SHAPE["vocab"], (4, 64), generator=torch.Generator().manual_seed(1))
    for model in (ours, theirs):
        beam_tokens_per_second(model, source, 4)  # warm-up
    a, b = median_pair(
        lambda: beam_tokens_per_second(ours, source, new_tokens),
        lambda: beam_tokens_per_second(theirs, source, new_tokens),
        rounds,
    )
    rows.append((f"generate, beam 4, fp32, 4 sources x 64 tokens, {new_tokens} new tokens", a, b))
    print(f"{rows[-1][0]}: {a:,.0f} vs {b:,.0f} tokens/s ({a / b:.2f}x)", flush=True)

    load = os.getloadavg()
    lines = [
        f"hftk_seq2seq vs BartForConditionalGeneration, {SHAPE['layers']}+{SHAPE['layers']} layers, hidden "
        f"{SHAPE['hidden']}, vocab {SHAPE['vocab']} ({parameters[0] / 1e6:.1f}M vs {parameters[1] / 1e6:.1f}M "
        f"parameters); torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) at the end; median of {rounds} rounds",
        "",
        "| measurement | hftk tokens/s | BART tokens/s | ratio |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {a:,.0f} | {b:,.0f} | {a / b:.2f}x |" for name, a, b in rows]
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
