"""Re-initialise the top blocks of a pretrained body before fine-tuning.

Zhang et al. (2021, "Revisiting Few-sample BERT Fine-tuning") found the top layers of a
pretrained encoder specialised to its pretraining objective, and re-drawing them helps when
labels are few. transformers has no switch for it (its `_init_weights` skips every tensor that
`from_pretrained` loaded), so the flag that marks a loaded tensor is cleared here first.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from hftk.errors import HftkError


def layer_list_name(model: torch.nn.Module, use_instead: str) -> str:
    """Dotted name of the body's blocks: the one `nn.ModuleList` of `num_hidden_layers` entries
    (hftk's `layers`, BERT's `encoder.layer`). `use_instead` ends the error when there is none."""
    count = model.config.num_hidden_layers
    names = [name for name, module in model.named_modules() if isinstance(module, nn.ModuleList) and len(module) == count]
    if len(names) != 1:
        raise HftkError(
            f"cannot find the {count} transformer blocks of {type(model).__name__} "
            f"(found {len(names)} candidate lists); {use_instead}"
        )
    return names[0]


def check_reinit(config, count: int) -> None:
    """Before any work: one line if the model has fewer layers than `count`."""
    depth = getattr(config, "num_hidden_layers", None)
    if count and depth is not None and count > depth:
        raise HftkError(f"model.reinit_top_layers={count} exceeds the model's {depth} layers: use at most {depth}")


def reinit_top_layers(model: PreTrainedModel, count: int) -> list[str]:
    """Draw the top `count` blocks afresh with the model's own initialisation; return their names."""
    blocks = model.get_submodule(layer_list_name(model, "model.reinit_top_layers supports models with one stack of blocks"))
    names = {id(module): name for name, module in model.named_modules()}
    chosen = list(blocks)[len(blocks) - count:]
    for block in chosen:
        for tensor in [*block.parameters(), *block.buffers()]:
            tensor._is_hf_initialized = False
        block.apply(model._init_weights)
    return [names[id(block)] for block in chosen]
