"""hftk's attention functions: transformers' own, with `sdpa` run in float32 for bf16 on CPUs without AMX.

Without AMX tiles, bf16 matmuls run on AVX-512 and PyTorch's bf16 flash-attention kernel
(forward + backward) is ~1.4x slower than the float32 one plus the casts (benchmarks/PROFILE.md).
The override is local to hftk's self-attention, the way transformers documents a model
replacing one implementation: an `AttentionInterface` instance with its own `sdpa` entry.

A sibling of modeling_hftk.py (relative imports only), so `save_pretrained` copies it and
`trust_remote_code=True` loads it where hftk is not installed.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

# Read once: a plain bool is free per call and constant under torch.compile.
_CPU_HAS_AMX = bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def _slow_bf16_sdpa(device: torch.device) -> bool:
    """A CPU without AMX tiles: bf16 matmuls there run on AVX-512, where float32 attention wins."""
    return device.type == "cpu" and not _CPU_HAS_AMX


def sdpa_float32_on_slow_bf16_cpu(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """transformers' SDPA attention; bf16 inputs on a CPU without AMX go through it in float32.

    Autocast (which would cast SDPA's inputs back to bf16) is off for the call; the output is
    cast back to the input dtype, as the bf16 kernel would return it.
    """
    if query.dtype != torch.bfloat16 or not _slow_bf16_sdpa(query.device):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    with torch.autocast(query.device.type, enabled=False):
        out, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask, **kwargs)
    return out.to(query.dtype), weights


ATTENTION_FUNCTIONS = AttentionInterface()
ATTENTION_FUNCTIONS["sdpa"] = sdpa_float32_on_slow_bf16_cpu
