"""Re-initialise the top blocks of a pretrained body before fine-tuning.

Zhang et al. (2021, "Revisiting Few-sample BERT Fine-tuning") found the top layers of a
pretrained encoder specialised to its pretraining objective, and re-drawing them helps when
labels are few. transformers has no switch for it (its `_init_weights` skips every tensor that
`from_pretrained` loaded), so the flag that marks a loaded tensor is cleared here first.
"""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel

from hftk.errors import HftkError


def layer_stack(model: PreTrainedModel) -> nn.ModuleList:
    """The body's list of blocks: the one `nn.ModuleList` with `num_hidden_layers` entries."""
    depth = model.config.num_hidden_layers
    stacks = [module for module in model.base_model.modules() if isinstance(module, nn.ModuleList) and len(module) == depth]
    if len(stacks) != 1:
        raise HftkError(
            f"model.reinit_top_layers: found {len(stacks)} stacks of {depth} blocks in {type(model).__name__}; "
            "it supports models with one stack (encoders, decoders)"
        )
    return stacks[0]


def check_reinit(config, count: int) -> None:
    """Before any work: one line if the model has fewer layers than `count`."""
    depth = getattr(config, "num_hidden_layers", None)
    if count and depth is not None and count > depth:
        raise HftkError(f"model.reinit_top_layers={count} exceeds the model's {depth} layers: use at most {depth}")


def reinit_top_layers(model: PreTrainedModel, count: int) -> list[str]:
    """Draw the top `count` blocks afresh with the model's own initialisation; return their names."""
    blocks = layer_stack(model)
    names = {id(module): name for name, module in model.named_modules()}
    chosen = list(blocks)[len(blocks) - count:]
    for block in chosen:
        for tensor in [*block.parameters(), *block.buffers()]:
            tensor._is_hf_initialized = False
        block.apply(model._init_weights)
    return [names[id(block)] for block in chosen]
