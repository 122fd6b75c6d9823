"""`hftk pretrain pretrain-seq2seq` (objective denoise) end to end: a loadable encoder–decoder, and a
killed-and-resumed run that ends with the weights of an uninterrupted one (the noise is reproducible)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.commands.test_pretrain import TINY, corpus, run_hftk  # noqa: F401 (corpus is a fixture)

SEQ2SEQ = [*(s for s in TINY if not s.startswith("tokenizer.vocab_size")), "tokenizer.vocab_size=400", "model.config.num_hidden_layers=1"]


def denoise_args(corpus: Path, out: Path, *extra: str) -> list[str]:
    sets = [*SEQ2SEQ, f"data.train_files={corpus}", *extra]
    return ["pretrain", "pretrain-seq2seq", "-o", str(out), *[arg for s in sets for arg in ("--set", s)]]


def test_denoise_kill_and_resume_matches_uninterrupted_run(corpus, tmp_path):  # noqa: F811
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    import hftk  # noqa: F401 (registers hftk_seq2seq; without it the folder needs trust_remote_code)

    # Dropout on (the recipe has none): the resumed run must draw the dropout masks the uninterrupted one draws.
    args = ("training.max_steps=8", "training.save_steps=4", "model.config.hidden_dropout_prob=0.1", "model.config.attention_probs_dropout_prob=0.1")
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    run_hftk(*denoise_args(corpus, reference, *args), check=True)
    killed = run_hftk(*denoise_args(corpus, resumed, *args), env={"HFTK_FAULT": "step:6"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    run_hftk(*denoise_args(corpus, resumed, *args), "--resume", check=True)
    expected, actual = load_file(reference / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
    metrics = json.loads((reference / "metrics.json").read_text())
    assert metrics["train_steps"] == 8 and 0 < metrics["eval_loss"] < 7  # below ln(400) = 6.0 plus margin: it learnt
    assert json.loads((resumed / "metrics.json").read_text())["eval_loss"] == metrics["eval_loss"]

    model = AutoModelForSeq2SeqLM.from_pretrained(reference)
    tokenizer = AutoTokenizer.from_pretrained(reference)
    assert model.config.model_type == "hftk_seq2seq" and model.config.decoder_start_token_id == tokenizer.bos_token_id
    assert tokenizer.mask_token == "<mask>" and tokenizer("a").input_ids[-1] == tokenizer.eos_token_id
    inputs = tokenizer("It is a truth <mask> acknowledged.", return_tensors="pt")
    assert model.generate(**inputs, max_new_tokens=4).shape[1] <= 5
