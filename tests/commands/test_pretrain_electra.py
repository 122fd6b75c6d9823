"""`hftk pretrain pretrain-electra` end to end: kill-and-resume equals the uninterrupted run; what the folder holds loads."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.commands.test_pretrain import TINY, corpus, run_hftk  # noqa: F401  (corpus is a fixture)

# Dropout on (the recipe has none): the resumed run must draw the dropout masks the uninterrupted one draws.
ARGS = ("training.max_steps=8", "training.save_steps=4", "training.eval_steps=4", "training.max_time_minutes=30",
        "model.config.hidden_dropout_prob=0.1", "model.config.attention_probs_dropout_prob=0.1")


def electra_args(corpus, out, *extra: str) -> list[str]:
    sets = [*TINY, f"data.train_files={corpus}", *ARGS, *extra]
    return ["pretrain", "pretrain-electra", "-o", str(out), *[arg for s in sets for arg in ("--set", s)]]


@pytest.mark.slow
def test_electra_kill_and_resume_equals_the_uninterrupted_run_and_the_folders_load(corpus, tmp_path):
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    run_hftk(*electra_args(corpus, reference), check=True)
    killed = run_hftk(*electra_args(corpus, resumed), env={"HFTK_FAULT": "step:6"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (resumed / "checkpoints" / "step-4" / "model" / "generator" / "model.safetensors").is_file()
    run_hftk(*electra_args(corpus, resumed), "--resume", check=True)

    for folder in ("", "generator"):  # the discriminator, and the generator: resumed sampling matched too
        expected, actual = load_file(reference / folder / "model.safetensors"), load_file(resumed / folder / "model.safetensors")
        assert expected.keys() == actual.keys()
        for name in expected:
            torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6, msg=f"{folder}/{name}")
    first, second = (json.loads((run / "metrics.json").read_text()) for run in (reference, resumed))
    assert second["eval_loss"] == pytest.approx(first["eval_loss"], rel=1e-5)
    assert second["eval_discriminator_accuracy"] == first["eval_discriminator_accuracy"]
    assert first["eval_loss"] == pytest.approx(first["eval_generator_loss"] + 50 * first["eval_discriminator_loss"], rel=1e-6)
    assert first["perplexity"] is None and first["train_steps"] == 8

    import hftk  # noqa: F401  (registers the Auto classes)
    from transformers import (
        AutoModelForMaskedLM,
        AutoModelForPreTraining,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    discriminator = AutoModelForPreTraining.from_pretrained(reference)
    body = {k: v for k, v in discriminator.state_dict().items() if k.startswith("model.")}
    for auto_class in (AutoModelForSequenceClassification, AutoModelForTokenClassification):
        model, info = auto_class.from_pretrained(reference, num_labels=3, output_loading_info=True)
        assert sorted(info["unexpected_keys"]) == sorted(k for k in discriminator.state_dict() if k.startswith("discriminator_head."))
        loaded = model.state_dict()
        assert all(torch.equal(loaded[name], tensor) for name, tensor in body.items())
    generator = AutoModelForMaskedLM.from_pretrained(reference / "generator")
    # The generator was trained with the discriminator's embeddings: its saved copy equals them.
    shared = "model.encoder.embeddings.word_embeddings.weight"
    assert torch.equal(generator.state_dict()[shared], discriminator.state_dict()[shared])
    assert generator.config.hidden_size * 4 == discriminator.config.hidden_size
