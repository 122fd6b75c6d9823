"""`shift_labels` (targets already aligned, as sequence/context-parallel training passes them) are the targets used."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hftk.models import HftkGptForCausalLM

from .tiny import build, tiny_gpt_config


@pytest.mark.parametrize("fused", [True, False])
def test_shift_labels_are_the_targets(fused):
    model = build(HftkGptForCausalLM, tiny_gpt_config(fused_lm_loss=fused)).train()
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 97, (2, 9), generator=generator)
    shifted = F.pad(ids, (0, 1), value=-100)[:, 1:]
    other = torch.randint(3, 97, ids.shape, generator=generator)
    with torch.no_grad():
        logits = model.eval()(ids).logits
    model.train()
    by_labels = model(ids, labels=ids).loss
    by_shift = model(ids, labels=other, shift_labels=shifted).loss  # `labels` must be ignored
    only_shift = model(ids, shift_labels=other).loss  # unshifted targets taken as given
    torch.testing.assert_close(by_shift, by_labels)
    torch.testing.assert_close(by_shift, F.cross_entropy(logits.reshape(-1, 97), shifted.reshape(-1)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(only_shift, F.cross_entropy(logits.reshape(-1, 97), other.reshape(-1)), atol=1e-5, rtol=1e-5)


def test_trainer_sees_labels_as_the_only_label_column():
    """Trainer takes every forward parameter named like "label" as a label column and evaluates
    without a loss when one is missing from the batch (run_clm.py then fails on `eval_loss`):
    `shift_labels` must come through **kwargs, as in transformers' own causal LMs."""
    from transformers.utils import find_labels

    import hftk.models as models

    classes = [getattr(models, name) for name in dir(models) if name.startswith("Hftk") and "For" in name]
    assert HftkGptForCausalLM in classes
    for cls in classes:
        assert find_labels(cls) in (["labels"], ["start_positions", "end_positions"]), cls.__name__
