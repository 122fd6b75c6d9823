"""The recipe's `training.gradient_checkpointing` and `training.torch_compile`, as the loop applies them."""

from __future__ import annotations

import pytest
import torch

from hftk.errors import HftkError
from hftk.models import HftkGptConfig, HftkGptForCausalLM
from hftk.recipe import TrainingSection
from hftk.training.loop import prepare_model


def tiny_decoder() -> HftkGptForCausalLM:
    torch.manual_seed(0)
    config = HftkGptConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=32)
    return HftkGptForCausalLM(config)


def test_options_default_off():
    model = tiny_decoder()
    prepare_model(model, TrainingSection())
    assert not model.is_activation_checkpointing and model._compiled_call_impl is None


def test_gradient_checkpointing_option_enables_it():
    model = tiny_decoder()
    prepare_model(model, TrainingSection(gradient_checkpointing=True))
    assert model.is_activation_checkpointing


def test_gradient_checkpointing_on_a_model_without_support_is_a_one_line_error():
    with pytest.raises(HftkError, match="training.gradient_checkpointing=false"):
        prepare_model(torch.nn.Linear(2, 2), TrainingSection(gradient_checkpointing=True))


def test_torch_compile_option_compiles_in_place_and_keeps_parameter_names():
    model = tiny_decoder()
    names = list(model.state_dict())
    prepare_model(model, TrainingSection(torch_compile=True))
    assert model._compiled_call_impl is not None
    assert list(model.state_dict()) == names  # no `_orig_mod.` prefix in saved folders
