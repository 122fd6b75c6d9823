"""`hftk pretrain` with `training.gradient_checkpointing`: same weights as without it, end to end."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.commands.test_pretrain import corpus, pretrain_args, run_hftk  # noqa: F401  (corpus is a fixture)


@pytest.mark.slow
def test_gradient_checkpointing_run_matches_plain_run(corpus, tmp_path):  # noqa: F811
    weights = {}
    for checkpointing in (False, True):
        out = tmp_path / f"gc-{checkpointing}"
        extra = ("training.max_steps=4", "training.save_steps=null", f"training.gradient_checkpointing={str(checkpointing).lower()}")
        run_hftk(*pretrain_args(corpus, out, *extra), check=True)
        weights[checkpointing] = load_file(out / "model.safetensors")
    assert weights[True].keys() == weights[False].keys()
    for name, tensor in weights[False].items():
        torch.testing.assert_close(weights[True][name], tensor, atol=1e-5, rtol=1e-4, msg=name)
