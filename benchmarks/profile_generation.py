"""Where `generate()` spends its time: hftk's decoder vs Llama at the same shape, greedy and beam search.

    python benchmarks/profile_generation.py --rounds 3 --threads 2

Same models and prompts as `bench_models.py --only generation` (4 layers, hidden 256, vocabulary
50,257, prompt 16 tokens, 32 new tokens, fp32, SDPA, KV cache). Each call's wall time is split by
timers around the model's `forward` (everything the model does) and around its body (embeddings
and blocks, `model.base_model`): forward minus body is the LM head (hftk projects decoding rows
through a cached transposed weight, not through the `lm_head` module, so the head is timed as the
difference); the rest is transformers' decoding loop, which both models share (logits
processors, beam scoring and selection, cache reordering, stopping criteria). The loop's share
says how much of a generation speed-up can come from the model at all: at most
1 / (loop share) even with an infinitely fast model. Runs rotate between the models round by
round; medians. Not a test: prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_models import GPT_VOCAB, hftk_decoder, llama  # noqa: E402


class Timer:
    """Seconds spent inside a module's forward (outermost calls only)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.seconds, self._depth, self._start = 0.0, 0, 0.0
        module.register_forward_pre_hook(self._enter)
        module.register_forward_hook(self._exit)

    def _enter(self, *_) -> None:
        if self._depth == 0:
            self._start = time.perf_counter()
        self._depth += 1

    def _exit(self, *_) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.seconds += time.perf_counter() - self._start


@torch.no_grad()
def breakdown(model, body: Timer, whole: Timer, prompt: torch.Tensor, new_tokens: int, beams: int) -> tuple[float, float, float]:
    """(wall seconds, seconds in forward, seconds in the LM head) of one generate call."""
    body.seconds = whole.seconds = 0.0
    start = time.perf_counter()
    out = model.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
        do_sample=False, num_beams=beams, use_cache=True, pad_token_id=0,
    )
    wall = time.perf_counter() - start
    assert out.shape[1] == prompt.shape[1] + new_tokens
    return wall, whole.seconds, whole.seconds - body.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--beams", type=int, nargs="*", default=[1, 4])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {"hftk": hftk_decoder(16).eval(), "Llama": llama(16).eval()}
    timers = {name: (Timer(model.base_model), Timer(model)) for name, model in models.items()}
    print(f"load average before: {os.getloadavg()[0]:.2f}; {args.threads} threads; {args.new_tokens} new tokens")
    print("| decoding | model | ms per call | in forward | of which LM head (forward − body) | outside forward (decoding loop) | hftk vs Llama: call / forward |")
    print("|---|---|---|---|---|---|---|")
    for batch in args.batches:
        prompt = torch.randint(0, GPT_VOCAB, (batch, 16), generator=torch.Generator().manual_seed(batch))
        for beams in args.beams:
            results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in models}
            names = list(models)
            for name in names:  # warm-up
                breakdown(models[name], *timers[name], prompt, 8, beams)
            for r in range(args.rounds):
                for i in range(len(names)):
                    name = names[(i + r) % len(names)]
                    results[name].append(breakdown(models[name], *timers[name], prompt, args.new_tokens, beams))
            medians = {name: [statistics.median(part) for part in zip(*rows)] for name, rows in results.items()}
            what = "greedy" if beams == 1 else f"beam-{beams}"
            for name, (wall, forward, head) in medians.items():
                ratio = ""
                if name == "hftk":
                    other = medians["Llama"]
                    ratio = f"**{other[0] / wall:.2f}×** / {other[1] / forward:.2f}×"
                print(
                    f"| {what}, batch {batch} | {name} | {wall * 1e3:,.0f} | {forward * 1e3:,.0f} ({forward / wall:.0%}) | "
                    f"{head * 1e3:,.0f} ({head / wall:.0%}) | {(wall - forward) * 1e3:,.0f} ({(wall - forward) / wall:.0%}) | {ratio} |"
                )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
