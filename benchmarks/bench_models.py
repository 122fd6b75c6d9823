"""Training and generation speed of hftk's models against transformers' modern and classic peers.

    python benchmarks/bench_models.py            # full run, several minutes on 2 CPU cores
    python benchmarks/bench_models.py --quick    # fewer rounds, batch-1 greedy generation only
    python benchmarks/bench_models.py --compile --only encoder decoder   # training under torch.compile

References: the encoder against `ModernBertForMaskedLM` (sparse prediction, GLU FFN) and
`BertForMaskedLM`; the decoder against `LlamaForCausalLM` (SwiGLU, tied embeddings) and
`GPT2LMHeadModel`. Same shape everywhere (4 layers, hidden 256, 4 heads, seq 128, batch 32),
dropout 0, SDPA attention, AdamW, the same random batch; the gated FFNs get width 682 so that
their parameter count matches the 1024-wide GELU FFN of hftk/BERT/GPT-2 (the script prints
every model's parameter count and its difference from hftk's). hftk runs its default
pretraining configuration (pre-LN, no biases in attention/FFN, sparse MLM loss for the
encoder, RoPE for the decoder); the references run theirs. Runs rotate between the models,
round by round, so that load from other processes hits all alike; the table reports the
median over rounds and hftk's ratio to each. Not a test: it prints a markdown table.
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

from transformers import (  # noqa: E402
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    ModernBertConfig,
    ModernBertForMaskedLM,
)
from transformers.utils import logging as hf_logging  # noqa: E402

import hftk  # noqa: E402,F401
from hftk.models import HftkBertConfig, HftkBertForMaskedLM, HftkGptConfig, HftkGptForCausalLM  # noqa: E402

SHAPE = dict(layers=4, hidden=256, heads=4, intermediate=1024)
GATED_INTERMEDIATE = 682  # 3 x 256 x 682 = 523,776 FFN weights per layer vs 2 x 256 x 1024 = 524,288
BERT_VOCAB, GPT_VOCAB = 30522, 50257


@dataclass
class Side:
    """One model in a comparison, with the label the table gives it."""

    label: str
    model: torch.nn.Module


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


def modernbert(seq: int) -> ModernBertForMaskedLM:
    """ModernBERT at hftk's shape: GLU FFN of width 682, sparse prediction (its own option)."""
    config = ModernBertConfig(
        vocab_size=BERT_VOCAB,
        hidden_size=SHAPE["hidden"],
        num_hidden_layers=SHAPE["layers"],
        num_attention_heads=SHAPE["heads"],
        intermediate_size=GATED_INTERMEDIATE,
        max_position_embeddings=max(seq, 512),
        pad_token_id=0,
        bos_token_id=101,
        cls_token_id=101,
        eos_token_id=102,
        sep_token_id=102,
        sparse_prediction=True,
        attn_implementation="sdpa",
    )
    return ModernBertForMaskedLM(config)


def llama(seq: int) -> LlamaForCausalLM:
    """Llama at hftk's shape: SwiGLU of width 682, RMSNorm, RoPE, embeddings tied as hftk's."""
    config = LlamaConfig(
        vocab_size=GPT_VOCAB,
        hidden_size=SHAPE["hidden"],
        num_hidden_layers=SHAPE["layers"],
        num_attention_heads=SHAPE["heads"],
        num_key_value_heads=SHAPE["heads"],
        intermediate_size=GATED_INTERMEDIATE,
        max_position_embeddings=max(seq + 160, 1024),
        tie_word_embeddings=True,
        bos_token_id=GPT_VOCAB - 1,
        eos_token_id=GPT_VOCAB - 1,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config)


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


def hftk_model_and_batch(name: str, batch: int, seq: int, generator: torch.Generator):
    """hftk's encoder with an MLM batch, or its decoder with a causal-LM batch (the profile and lever scripts)."""
    torch.manual_seed(0)
    if name == "encoder":
        return hftk_encoder(seq), mlm_batch(batch, seq, 0.15, generator)
    return hftk_decoder(seq), clm_batch(batch, seq, generator)


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
def generate_tokens_per_second(model, prompt: torch.Tensor, new_tokens: int, beams: int = 1) -> float:
    start = time.perf_counter()
    out = model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        num_beams=beams,
        use_cache=True,
        pad_token_id=0,
    )
    elapsed = time.perf_counter() - start
    assert out.shape[1] == prompt.shape[1] + new_tokens
    return prompt.shape[0] * new_tokens / elapsed


def alternate(rounds: int, measures: list) -> list[float]:
    """Median of `rounds` measurements of each, the starting model rotating round by round."""
    results: list[list[float]] = [[] for _ in measures]
    for r in range(rounds):
        for i in range(len(measures)):
            j = (i + r) % len(measures)
            results[j].append(measures[j]())
    return [statistics.median(r) for r in results]


def bench_training(
    models: list[torch.nn.Module], batch, dtype: str, steps: int, rounds: int, warmup: int, compile: bool = False
) -> list[float]:
    optimizers = []
    for model in models:
        model.train()
        if compile:
            model.compile()  # in place, as hftk's `training.torch_compile`; compiles during warm-up
        optimizers.append(torch.optim.AdamW(model.parameters(), lr=1e-4))
        train_tokens_per_second(model, optimizers[-1], batch, warmup, dtype)
    return alternate(
        rounds,
        [
            lambda m=model, o=optimizer: train_tokens_per_second(m, o, batch, steps, dtype)
            for model, optimizer in zip(models, optimizers)
        ],
    )


def bench_generation(
    models: list[torch.nn.Module], batch: int, prompt_length: int, new_tokens: int, rounds: int, beams: int
) -> list[float]:
    generator = torch.Generator().manual_seed(batch)
    prompt = torch.randint(0, GPT_VOCAB, (batch, prompt_length), generator=generator)
    for model in models:
        model.eval()
        generate_tokens_per_second(model, prompt, 8, beams)  # warm-up
    return alternate(rounds, [lambda m=model: generate_tokens_per_second(m, prompt, new_tokens, beams) for model in models])


def parameter_note(sides: list[Side]) -> str:
    """Each model's parameter count (tied weights once) and its difference from hftk's (the first)."""
    counts = [sum(p.numel() for p in side.model.parameters()) for side in sides]
    return "; ".join(
        f"{side.label} {count / 1e6:.2f} M ({(count - counts[0]) / counts[0]:+.1%})" for side, count in zip(sides, counts)
    )


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per timed training run")
    parser.add_argument("--rounds", type=int, default=5, help="rotating timed runs per model (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per model and dtype")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--mlm-probability", type=float, default=0.15)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--generation-batches", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--beams", type=int, nargs="*", default=[1, 4], help="1 = greedy; >1 = beam search")
    parser.add_argument("--dtypes", nargs="*", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--only", choices=["encoder", "decoder", "generation"], nargs="*", default=None)
    parser.add_argument(
        "--references", choices=["modern", "classic"], nargs="*", default=["modern", "classic"],
        help="modern: ModernBERT / Llama; classic: BERT / GPT-2",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2 steps x 3 rounds, batch-1 greedy generation of 64 tokens")
    parser.add_argument("--output", help="also write the markdown table to this file")
    parser.add_argument("--compile", action="store_true", help="torch.compile every model for training (not generation)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.rounds, args.generation_batches, args.new_tokens, args.beams = 2, 3, [1], 64, [1]
    parts = set(args.only or ["encoder", "decoder", "generation"])

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    load_before = os.getloadavg()[0]
    generator = torch.Generator().manual_seed(0)
    rows, notes = [], []

    def row(what: str, dtype: str, sides: list[Side], speeds: list[float]) -> None:
        cells = [f"{speeds[0]:,.0f}"]
        for side, speed in zip(sides[1:], speeds[1:]):
            cells.append(f"{side.label} {speed:,.0f} · **{speeds[0] / speed:.2f}×**")
        rows.append(f"| {what} | {dtype} | " + " | ".join(cells) + " |")
        print(rows[-1], file=sys.stderr, flush=True)

    def chosen(modern: Side, classic: Side) -> list[Side]:
        return [side for kind, side in (("modern", modern), ("classic", classic)) if kind in args.references]

    if "encoder" in parts:
        torch.manual_seed(0)
        sides = [Side("hftk", hftk_encoder(args.seq)),
                 *chosen(Side("ModernBERT", modernbert(args.seq)), Side("BERT", bert(args.seq)))]
        notes.append("encoder parameters: " + parameter_note(sides))
        batch = mlm_batch(args.batch, args.seq, args.mlm_probability, generator)
        for dtype in args.dtypes:
            speeds = bench_training([s.model for s in sides], batch, dtype, args.steps, args.rounds, args.warmup, args.compile)
            row("MLM training, tokens/s", dtype, sides, speeds)
        del sides
    if "decoder" in parts or "generation" in parts:
        torch.manual_seed(0)
        sides = [Side("hftk", hftk_decoder(args.seq)),
                 *chosen(Side("Llama", llama(args.seq)), Side("GPT-2", gpt2(args.seq)))]
        notes.append("decoder parameters: " + parameter_note(sides))
        models = [s.model for s in sides]
        if "decoder" in parts:
            batch = clm_batch(args.batch, args.seq, generator)
            for dtype in args.dtypes:
                speeds = bench_training(models, batch, dtype, args.steps, args.rounds, args.warmup, args.compile)
                row("causal LM training, tokens/s", dtype, sides, speeds)
        if "generation" in parts:
            for beams in args.beams:
                for size in args.generation_batches:
                    speeds = bench_generation(models, size, 16, args.new_tokens, args.rounds, beams)
                    what = "greedy" if beams == 1 else f"beam-{beams}"
                    row(f"{what} generation, batch {size}, {args.new_tokens} new tokens, tokens/s", "fp32", sides, speeds)

    command = "python benchmarks/bench_models.py " + " ".join(sys.argv[1:] if argv is None else argv)
    references = len(rows[0].split("|")) - 5 if rows else 0
    header_refs = [("ModernBERT / Llama" if kind == "modern" else "BERT / GPT-2") for kind in args.references][:references]
    table = "\n".join(
        [
            f"`{command.strip()}` — torch {torch.__version__}, {args.threads} threads on {os.cpu_count()} cores "
            f"({platform.machine()}), median of {args.rounds} rotating rounds of {args.steps} steps "
            f"(batch {args.batch} × seq {args.seq}, AdamW{', torch.compile' if args.compile else ''}); 1-min load average "
            f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after (other processes on the machine slow all sides)",
            "",
            "| workload | dtype | hftk | " + " | ".join(f"{h}: tokens/s · hftk ratio" for h in header_refs) + " |",
            "|---|---|---|" + "---|" * len(header_refs),
            *rows,
            "",
            *(f"- {note}" for note in notes),
            "",
            f"Shape: {SHAPE['layers']} layers, hidden {SHAPE['hidden']}, {SHAPE['heads']} heads, intermediate "
            f"{SHAPE['intermediate']} (gated FFNs: {GATED_INTERMEDIATE}), dropout 0, SDPA, MLM masking "
            f"{args.mlm_probability:.0%}. hftk: default config (pre-LN, no attention/FFN biases, tied embeddings, final "
            "norm; encoder: learned positions, loss on masked positions only; decoder: RoPE). ModernBERT: its defaults "
            "(RoPE, GeGLU, alternating global/local attention, no biases) with `sparse_prediction=True`; Llama: its "
            "defaults (RoPE, SwiGLU, RMSNorm) with tied embeddings. BERT/GPT-2: their defaults.",
        ]
    )
    print(table)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(table + "\n")
    return table


if __name__ == "__main__":
    main()
