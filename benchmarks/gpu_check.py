"""GPU readiness check: bf16 step throughput and MFU, fused attention, generate, a 2-step FSDP job.

    bash benchmarks/gpu_check.sh                 # on a CUDA machine: writes benchmarks/RESULTS-gpu.md
    bash benchmarks/gpu_check.sh --dry-run       # CPU, tiny shapes: checks the script itself (the test suite runs this)

Run by gpu_check.sh (which adds the machine lines); unattended, about 5 minutes on one H100.

1. Training step, bf16 autocast (as Accelerate's `mixed_precision: bf16`), fused AdamW, eager:
   hftk_bert (the shipped pretraining recipe's body: pre-LN, RoPE, embedding norm, sparse/fused
   MLM loss) against ModernBertForMaskedLM (dense decoder as run_mlm trains it, and with its
   `sparse_prediction`), at BERT-base shape (12 x 768, 3072 feed-forward or a parameter-matched
   GLU, sequences of 512, 25 % masking); hftk_gpt against LlamaForCausalLM (tied embeddings, GLU
   matched) at GPT-2-small shape (12 x 768, sequences of 1024). Tokens per second over timed steps
   after warm-up; FLOPs of one step counted by PyTorch's FlopCounterMode (what the step really
   executes, so sparse prediction is not credited with work it skips); MFU = FLOPs/s over the
   device's dense bf16 peak (H100/H200 SXM 989 TFLOPS; set HFTK_PEAK_TFLOPS for another card).
2. Fused attention: each model's forward + backward under `sdpa_kernel([FLASH, EFFICIENT])`, which
   raises where SDPA would fall back to the math kernel; with and without padding.
3. generate: 128 new tokens greedily for 8 prompts of 64 tokens, KV cache, bf16 weights, hftk_gpt
   against Llama of the same shape; new tokens per second.
4. FSDP: `accelerate launch` with hftk's shipped fsdp.yaml, one process, 2 steps of `hftk pretrain
   pretrain-gpt` (bf16 on GPU); checks it exits 0, ran 2 steps and saved a loadable model.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "H800": 989.4, "A100": 312.0, "L40S": 362.0, "A10G": 70.0}


@dataclass(frozen=True)
class Sizes:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    encoder_seq: int
    encoder_batch: int
    decoder_seq: int
    decoder_batch: int
    timed_steps: int
    prompt: int
    new_tokens: int


REAL = Sizes(768, 12, 12, 3072, 32768, 512, 32, 1024, 16, 10, 64, 128)
TINY = Sizes(64, 2, 2, 256, 512, 64, 4, 64, 4, 2, 8, 8)


def peak_flops(device: torch.device) -> float | None:
    if os.environ.get("HFTK_PEAK_TFLOPS"):
        return float(os.environ["HFTK_PEAK_TFLOPS"]) * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    if "H100" in name and "PCIe" in name:
        return 756.0e12
    return next((tflops * 1e12 for key, tflops in PEAK_BF16_TFLOPS.items() if key in name), None)


# ---------------------------------------------------------------------------------------------
# Models at the same shape
# ---------------------------------------------------------------------------------------------


def glu_width(sizes: Sizes) -> int:
    """A gated feed-forward's width with the parameters of a plain one, rounded to a multiple of 64."""
    return round(2 * sizes.intermediate / 3 / 64) * 64


def build(name: str, sizes: Sizes, seq: int):
    """(model, kind) at the shared shape, random init, attention through SDPA."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, LlamaConfig, ModernBertConfig

    from hftk.models import HftkBertConfig, HftkGptConfig

    shape = dict(hidden_size=sizes.hidden, num_hidden_layers=sizes.layers, num_attention_heads=sizes.heads, vocab_size=sizes.vocab)
    recipe_body = dict(position_embedding_type="rope", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if name == "hftk_bert":
        config = HftkBertConfig(**shape, **recipe_body, intermediate_size=sizes.intermediate, max_position_embeddings=seq,
                                embedding_norm=True, pad_token_id=0)  # fmt: skip
        return AutoModelForMaskedLM.from_config(config, attn_implementation="sdpa"), "mlm"
    if name.startswith("modernbert"):
        config = ModernBertConfig(**shape, intermediate_size=glu_width(sizes), max_position_embeddings=seq, pad_token_id=0,
                                  bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2,
                                  layer_types=["full_attention"] * sizes.layers, sparse_prediction=name.endswith("sparse"))  # fmt: skip
        return AutoModelForMaskedLM.from_config(config, attn_implementation="sdpa"), "mlm"
    if name == "hftk_gpt":
        config = HftkGptConfig(**shape, **recipe_body, intermediate_size=sizes.intermediate, max_position_embeddings=seq,
                               bos_token_id=1, eos_token_id=2)  # fmt: skip
        return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa"), "clm"
    if name == "llama":
        config = LlamaConfig(**shape, intermediate_size=glu_width(sizes), max_position_embeddings=seq, tie_word_embeddings=True,
                             bos_token_id=1, eos_token_id=2, pad_token_id=0)  # fmt: skip
        return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa"), "clm"
    raise ValueError(name)


def make_batch(kind: str, sizes: Sizes, batch: int, seq: int, device: torch.device, padded: bool = False) -> dict:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, sizes.vocab, (batch, seq), generator=generator)
    mask = torch.ones_like(ids)
    if padded:  # the second half of the rows end 1/4 early
        mask[batch // 2 :, -seq // 4 :] = 0
    if kind == "mlm":
        labels = torch.where(torch.rand(ids.shape, generator=generator) < 0.25, ids, torch.full_like(ids, -100))
        labels[mask == 0] = -100
    else:
        labels = ids.masked_fill(mask == 0, -100)
    return {name: t.to(device) for name, t in (("input_ids", ids), ("attention_mask", mask), ("labels", labels))}


def autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def train_step(model, batch: dict, optimizer, device: torch.device) -> None:
    extra = {"sparse_prediction": True} if type(model).__name__ == "HftkBertForMaskedLM" else {}  # as hftk's loop
    with autocast(device):
        loss = model(**batch, **extra).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------
# 1. Training throughput and MFU
# ---------------------------------------------------------------------------------------------


def measure_training(name: str, sizes: Sizes, device: torch.device) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    kind = "mlm" if name in ("hftk_bert", "modernbert", "modernbert-sparse") else "clm"
    seq, batch_size = (sizes.encoder_seq, sizes.encoder_batch) if kind == "mlm" else (sizes.decoder_seq, sizes.decoder_batch)
    torch.manual_seed(0)
    model, _ = build(name, sizes, seq)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    batch = make_batch(kind, sizes, batch_size, seq, device)
    for _ in range(3):  # warm-up: allocator, kernels' autotuning, Adam's state
        train_step(model, batch, optimizer, device)
    counter = FlopCounterMode(display=False)
    with counter:
        train_step(model, batch, optimizer, device)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(sizes.timed_steps):
        train_step(model, batch, optimizer, device)
    synchronize(device)
    seconds = (time.perf_counter() - start) / sizes.timed_steps
    flops = counter.get_total_flops()
    peak = peak_flops(device)
    result = {
        "model": name, "parameters_m": model.num_parameters() / 1e6, "tokens": batch_size * seq, "step_ms": seconds * 1e3,
        "tokens_per_s": batch_size * seq / seconds, "tflops_per_step": flops / 1e12, "achieved_tflops": flops / seconds / 1e12,
        "mfu": flops / seconds / peak if peak else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }  # fmt: skip
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    return result


# ---------------------------------------------------------------------------------------------
# 2. Fused attention
# ---------------------------------------------------------------------------------------------


def fused_attention(name: str, sizes: Sizes, device: torch.device, padded: bool) -> str:
    """Which fused SDPA kernels the model's forward + backward run under: 'flash', 'efficient', both, or 'none'."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kind = "mlm" if name.startswith(("hftk_bert", "modernbert")) else "clm"
    seq = min(sizes.encoder_seq, 256)
    torch.manual_seed(0)
    model, _ = build(name, sizes, seq)
    model.to(device).train()
    batch = make_batch(kind, sizes, 4, seq, device, padded=padded)
    taken = []
    for label, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION)):
        try:
            with sdpa_kernel([backend]), autocast(device):
                model(**batch).loss.backward()
            taken.append(label)
        except RuntimeError:  # "No available kernel": SDPA would have fallen back to math
            pass
        model.zero_grad(set_to_none=True)
    return " + ".join(taken) or "none (math fallback)"


# ---------------------------------------------------------------------------------------------
# 3. generate
# ---------------------------------------------------------------------------------------------


def measure_generate(name: str, sizes: Sizes, device: torch.device) -> dict:
    torch.manual_seed(0)
    model, _ = build(name, sizes, sizes.prompt + sizes.new_tokens)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model.to(device=device, dtype=dtype).eval()
    prompts = make_batch("clm", sizes, 8, sizes.prompt, device)["input_ids"]
    settings = dict(max_new_tokens=sizes.new_tokens, min_new_tokens=sizes.new_tokens, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        model.generate(prompts, **{**settings, "max_new_tokens": 8, "min_new_tokens": 8})  # warm-up
        synchronize(device)
        start = time.perf_counter()
        out = model.generate(prompts, **settings)
        synchronize(device)
    seconds = time.perf_counter() - start
    new = (out.shape[1] - prompts.shape[1]) * out.shape[0]
    return {"model": name, "new_tokens": new, "seconds": seconds, "tokens_per_s": new / seconds, "ms_per_step": seconds / sizes.new_tokens * 1e3}


# ---------------------------------------------------------------------------------------------
# 4. FSDP, one process, 2 steps
# ---------------------------------------------------------------------------------------------


def fsdp_two_steps(device: torch.device, sizes: Sizes, work: Path) -> dict:
    from hftk.training.distributed import accelerate_config_paths

    out = work / "fsdp-run"
    cuda = device.type == "cuda"
    sets = [
        "training.max_steps=2", "training.save_steps=2", "training.eval_steps=2", "training.max_eval_batches=2",
        "training.logging_steps=1", "training.report_to=[]", *(["training.mixed_precision=bf16"] if cuda else []),
        f"model.config.hidden_size={sizes.hidden}", f"model.config.num_hidden_layers={sizes.layers}",
        f"model.config.num_attention_heads={sizes.heads}", f"model.config.intermediate_size={sizes.intermediate}",
        f"tokenizer.vocab_size={min(sizes.vocab, 8192)}", "training.per_device_train_batch_size=8",
    ]  # fmt: skip
    if not cuda:  # a few hundred paragraphs: the tokenizer and packing take seconds, not a minute
        corpus = work / "corpus.txt"
        from hftk.data.corpus import default_corpus_path
        import gzip

        with gzip.open(default_corpus_path(), "rt") as source:
            corpus.write_text("".join(line for _, line in zip(range(400), source)))
        sets += ["training.num_threads=1", "data.max_seq_length=32", "model.config.max_position_embeddings=32",
                 f"data.train_files=[{corpus}]", "data.validation_split_percentage=10"]  # fmt: skip
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config_paths()["fsdp"]),
        "--num_processes", "1", *(["--mixed_precision", "bf16"] if cuda else []),
        "-m", "hftk", "pretrain", "pretrain-gpt", "-o", str(out), "--overwrite",
    ]  # fmt: skip
    command += [part for item in sets for part in ("--set", item)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    result = {"exit_code": done.returncode, "seconds": time.perf_counter() - start, "command": " ".join(command)}
    (work / "fsdp.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:  # hftk's one-line error, or the worker's traceback, not the launcher's
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        errors = [line for line in lines if line.lower().startswith(("error:", "hftk: error")) or "Error" in line.split(":")[0]]
        result["error"] = "\n".join(errors[:10] or lines[-30:])
        return result
    metrics = json.loads((out / "metrics.json").read_text())
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)
    result.update(steps=metrics["train_steps"], eval_loss=metrics["eval_loss"], loads_as=type(model).__name__)
    return result


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def write_report(path: Path, header: list[str], sizes: Sizes, training: list[dict], attention: list[tuple], generation: list[dict], fsdp: dict) -> str:
    lines = [*header, "", f"Shapes: {sizes}", "", "### Training step, bf16 autocast, fused AdamW", ""]
    lines += ["| model | parameters (M) | tokens/step | step (ms) | tokens/s | TFLOP/step | TFLOP/s | MFU | peak memory (GiB) |", "|---" * 9 + "|"]
    for r in training:
        lines.append(
            f"| {r['model']} | {r['parameters_m']:.1f} | {r['tokens']} | {r['step_ms']:.1f} | {r['tokens_per_s']:,.0f} | "
            f"{r['tflops_per_step']:.2f} | {r['achieved_tflops']:.1f} | {fmt(r['mfu'] and 100 * r['mfu'], '.1f')} % | {fmt(r['peak_memory_gib'], '.1f')} |"
        )
    by_name = {r["model"]: r for r in training}
    lines += [""]
    for ours, theirs in (("hftk_bert", "modernbert"), ("hftk_bert", "modernbert-sparse"), ("hftk_gpt", "llama")):
        if ours in by_name and theirs in by_name:
            lines.append(f"- {ours} / {theirs} tokens per second: {by_name[ours]['tokens_per_s'] / by_name[theirs]['tokens_per_s']:.2f}x")
    encoder_mfu = by_name.get("hftk_bert", {}).get("mfu")
    lines.append(f"- goal: hftk_bert MFU >= 45 %: {'n/a (no peak known for this device)' if encoder_mfu is None else ('met' if encoder_mfu >= 0.45 else 'not met')} ")
    lines += ["", "### Fused attention (SDPA kernels that accept the model's forward + backward)", ""]
    lines += ["| model | no padding | padding |", "|---|---|---|"]
    lines += [f"| {name} | {plain} | {padded} |" for name, plain, padded in attention]
    lines += ["", f"### generate: {sizes.new_tokens} new tokens, 8 prompts of {sizes.prompt}, greedy, KV cache", ""]
    lines += ["| model | new tokens/s | ms per decoding step |", "|---|---|---|"]
    lines += [f"| {r['model']} | {r['tokens_per_s']:,.0f} | {r['ms_per_step']:.2f} |" for r in generation]
    lines += ["", "### FSDP, one process, 2 steps (shipped fsdp.yaml)", ""]
    if fsdp["exit_code"] == 0:
        lines.append(f"- passed: {fsdp['steps']} steps, eval loss {fsdp['eval_loss']:.3f}, loads as {fsdp['loads_as']}, {fsdp['seconds']:.0f} s")
    else:
        lines += [f"- FAILED (exit {fsdp['exit_code']}):", "```", fsdp.get("error", "").strip(), "```"]
    lines.append(f"- command: `{fsdp['command']}`")
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes: check the script, measure nothing meaningful")
    parser.add_argument("--output", type=Path, default=None, help="the results file (default: benchmarks/RESULTS-gpu.md; dry run: a temporary folder)")
    parser.add_argument("--header", action="append", default=[], help="a line for the top of the results file (gpu_check.sh adds the machine)")
    args = parser.parse_args(argv)
    import hftk  # noqa: F401  (registers hftk's model types)

    if args.dry_run:
        device, sizes = torch.device("cpu"), TINY
        torch.set_num_threads(1)
    else:
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device visible (torch.cuda.is_available() is False): run on a GPU machine, or pass --dry-run", file=sys.stderr)
            return 2
        device, sizes = torch.device("cuda"), REAL
        torch.backends.cuda.matmul.allow_tf32 = True
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    output = args.output or (work / "RESULTS-gpu.md" if args.dry_run else REPO / "benchmarks" / "RESULTS-gpu.md")
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu (dry run)'}", flush=True)

    training = []
    for name in ("hftk_bert", "modernbert", "modernbert-sparse", "hftk_gpt", "llama"):
        training.append(measure_training(name, sizes, device))
        print(f"train {name}: {training[-1]['tokens_per_s']:,.0f} tokens/s, MFU {fmt(training[-1]['mfu'], '.3f')}", flush=True)
    attention = [(name, fused_attention(name, sizes, device, False), fused_attention(name, sizes, device, True)) for name in ("hftk_bert", "modernbert", "hftk_gpt", "llama")]
    for row in attention:
        print("fused attention", *row, flush=True)
    generation = [measure_generate(name, sizes, device) for name in ("hftk_gpt", "llama")]
    for r in generation:
        print(f"generate {r['model']}: {r['tokens_per_s']:,.0f} new tokens/s", flush=True)
    fsdp = fsdp_two_steps(device, sizes, work)
    print(f"fsdp: exit {fsdp['exit_code']}, {fsdp.get('steps')} steps", flush=True)
    header = args.header or ["## GPU check"]
    print(write_report(output, header, sizes, training, attention, generation, fsdp))
    print(f"wrote {output}")
    if work not in output.resolve().parents:  # the FSDP run folder and its log: kept only when the results are there too
        shutil.rmtree(work, ignore_errors=True)
    return 0 if fsdp["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
