"""The KV cache under the name the installed transformers release gives it (`past_key_values` or `cache`).

A sibling of modeling_hftk.py (relative imports only), so `save_pretrained` copies it and
`trust_remote_code=True` loads it where hftk is not installed.
"""

from __future__ import annotations

import inspect
import warnings

import torch
from torch import nn
from transformers.cache_utils import Cache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.utils import ModelOutput

from .configuration_hftk import HftkConfig

# transformers 5.24 renamed the KV cache `past_key_values` -> `cache` in create_causal_mask, the model
# outputs and the kwargs generate() passes; the old names still work there, with a deprecation
# warning. hftk runs on both sides of the rename, so it names the cache as the installed release does.
_MASK_CACHE_ARG = "cache" if "cache" in inspect.signature(create_causal_mask).parameters else "past_key_values"
_OUTPUT_CACHE_FIELD = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"


def causal_mask(
    config: HftkConfig, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None,
    cache: Cache | None, position_ids: torch.Tensor,
) -> torch.Tensor | None:
    """transformers' `create_causal_mask`, given the cache under the installed release's name for it."""
    return create_causal_mask(
        config=config, inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
        **{_MASK_CACHE_ARG: cache},
    )


def cache_field(cache: Cache | None) -> dict[str, Cache | None]:
    """The keyword a model output takes its cache under: `**cache_field(cache)`."""
    return {_OUTPUT_CACHE_FIELD: cache}


def take_cache(cache: Cache | None, kwargs: dict, model_name: str) -> Cache | None:
    """The KV cache a caller passed: `cache`, or `past_key_values`, its name before transformers 5.24.

    The models' signatures say `cache`, as transformers' own from 5.24 on. Earlier releases' generate()
    passes `past_key_values`, which is taken quietly there; from 5.24 on it is deprecated, and warns as
    transformers' own models do.
    """
    old = kwargs.pop("past_key_values", None)
    if old is None:
        return cache
    if cache is not None:
        raise ValueError("You cannot specify both `cache` and `past_key_values`: use `cache` only.")
    if _OUTPUT_CACHE_FIELD == "cache":
        warnings.warn(
            f"`past_key_values` is deprecated for `{model_name}.forward` from transformers 5.24 on. Use `cache` instead.",
            FutureWarning,
            stacklevel=3,
        )
    return old


def output_cache(output: ModelOutput) -> Cache | None:
    """The KV cache of an output `cache_field` filled (5.24+ warns on reading `.past_key_values`)."""
    return output.get(_OUTPUT_CACHE_FIELD)


def replays_in_backward(layers: nn.ModuleList) -> bool:
    """Gradient checkpointing will rerun these blocks in the backward pass, and so write a KV cache twice.

    transformers' `GradientCheckpointingLayer` drops a cache it finds under its release's name for
    it (`cache` from 5.24 on), which is not the `past_key_values` hftk's blocks take; so with
    checkpointing on, the model builds no cache to begin with.
    """
    first = layers[0] if len(layers) else None
    return first is not None and first.gradient_checkpointing and first.training and torch.is_grad_enabled()
