"""Build the student: a copy of some of the teacher's layers, or a fresh hftk_bert from a config.

Layer selection is DistilBERT's initialisation (every other teacher layer): the student has the
teacher's embeddings, its head and its blocks `layers[k]` as block k, copied tensor for tensor.
It works on any model whose blocks sit in one `nn.ModuleList` of `num_hidden_layers` entries
(transformers' BERT `encoder.layer`, hftk's `layers`), so the folder `hftk convert` makes of a
BERT and transformers' own BERT both qualify.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from hftk.errors import HftkError
from hftk.training.reinit import layer_list_name as find_layer_list


def layer_list_name(model: torch.nn.Module) -> str:
    """Dotted name of the ModuleList holding the transformer blocks."""
    return find_layer_list(model, "use student.name_or_path or student.config instead")


def select_layers(teacher: PreTrainedModel, layers: list[int]) -> PreTrainedModel:
    """A model of the teacher's class with blocks `layers` of the teacher and everything else copied."""
    total = teacher.config.num_hidden_layers
    if not layers or max(layers) >= total:
        raise HftkError(f"student.layers {layers} must be indices of the teacher's {total} layers (0..{total - 1})")
    prefix = layer_list_name(teacher) + "."
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.(.*)")
    keep = {old: new for new, old in enumerate(layers)}
    state: dict[str, torch.Tensor] = {}
    for key, tensor in teacher.state_dict().items():
        match = pattern.fullmatch(key)
        if match is None:
            state[key] = tensor.clone()
        elif int(match.group(1)) in keep:
            state[f"{prefix}{keep[int(match.group(1))]}.{match.group(2)}"] = tensor.clone()
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    if isinstance(getattr(config, "layer_types", None), list):  # per-layer settings follow their layers
        config.layer_types = [config.layer_types[i] for i in layers]
    student = type(teacher)(config)
    missing, unexpected = student.load_state_dict(state, strict=False)
    tied = set(getattr(student, "_tied_weights_keys", None) or {})
    if unexpected or set(missing) - tied:
        raise HftkError(f"layer selection does not fit {type(teacher).__name__}: missing {missing}, unexpected {unexpected}")
    student.tie_weights()
    return student.to(teacher.dtype).eval()


def write_layer_selection(teacher: PreTrainedModel, layers: list[int], tokenizer: Any, folder: Path) -> Path:
    """Save the layer-selected student with the teacher's tokenizer: a folder `hftk finetune` loads."""
    select_layers(teacher, layers).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_fresh_student(config_fields: dict[str, Any], tokenizer: Any, max_seq_length: int, folder: Path) -> Path:
    """A randomly initialised hftk_bert (the task head comes later, as in fine-tuning) with the teacher's tokenizer."""
    from hftk.models import HftkBertConfig, HftkBertForMaskedLM

    fields = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id, **config_fields}
    config = HftkBertConfig(**fields)
    if max_seq_length > config.max_position_embeddings:
        raise HftkError(
            f"data.max_seq_length ({max_seq_length}) exceeds student.config.max_position_embeddings "
            f"({config.max_position_embeddings}); lower the first or raise the second"
        )
    HftkBertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
