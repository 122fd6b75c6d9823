"""Gradient checkpointing (transformers' `GradientCheckpointingLayer` blocks) changes memory, not results."""

from __future__ import annotations

import pytest
import torch

from hftk.models import HftkBertForMaskedLM, HftkGptForCausalLM
from hftk.models.modeling_hftk import SelfAttention

from .tiny import build, tiny_bert_config, tiny_gpt_config


def loss_and_grads(model, batch, checkpointing: bool, use_reentrant: bool = False):
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": use_reentrant})
    else:
        model.activation_checkpointing_disable()
    calls = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in model.modules() if isinstance(m, SelfAttention)]
    model.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    for hook in hooks:
        hook.remove()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, len(calls)


@pytest.mark.parametrize("use_reentrant", [False, True])
@pytest.mark.parametrize(
    "model_class, config",
    [
        (HftkBertForMaskedLM, tiny_bert_config(hidden_dropout_prob=0.1)),  # dropout: the recompute must replay its RNG
        (HftkBertForMaskedLM, tiny_bert_config(pre_norm=False, position_embedding_type="sinusoidal", fused_lm_loss=False)),
        (HftkGptForCausalLM, tiny_gpt_config(hidden_dropout_prob=0.1)),
        (HftkGptForCausalLM, tiny_gpt_config(position_embedding_type="learned", norm_type="rmsnorm")),
    ],
)
def test_gradients_equal_with_and_without_checkpointing(model_class, config, use_reentrant):
    model = build(model_class, config).train()
    torch.manual_seed(1)
    ids = torch.randint(5, 97, (3, 16))
    labels = ids.clone()
    if model_class is HftkBertForMaskedLM:
        labels[torch.rand(ids.shape) > 0.3] = -100
        labels[0, 0] = ids[0, 0]
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    torch.manual_seed(7)
    plain_loss, plain_grads, plain_calls = loss_and_grads(model, batch, checkpointing=False)
    torch.manual_seed(7)
    ckpt_loss, ckpt_grads, ckpt_calls = loss_and_grads(model, batch, checkpointing=True, use_reentrant=use_reentrant)

    layers = config.num_hidden_layers
    assert plain_calls == layers and ckpt_calls == 2 * layers  # each block's attention ran again in backward
    assert model.is_activation_checkpointing
    torch.testing.assert_close(ckpt_loss, plain_loss, atol=0, rtol=0)
    assert ckpt_grads.keys() == plain_grads.keys() and len(plain_grads) > 10
    for name, grad in plain_grads.items():
        torch.testing.assert_close(ckpt_grads[name], grad, atol=1e-6, rtol=1e-5, msg=name)
