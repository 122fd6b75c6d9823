"""`hftk pretrain` with `data.streaming: true`: exact kill-and-resume, 2 processes equal 1, recipe errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.training.test_distributed import free_port
from hftk.errors import HftkError
from hftk.recipe import PretrainRecipe, load_recipe
from tests.commands.test_pretrain import SHARED, pretrain_args, run_hftk

# 10 paragraphs: 71 blocks, 8 batches of 8 an epoch, so 16 steps cross an epoch boundary and the
# step-12 checkpoint sits inside the second epoch (its resume rebuilds the stream and skips 4 batches).
# With 2 processes of batch 4, rank 0 keeps 36 blocks (9 batches) and rank 1 35 (8): both must end
# each epoch after 8, or rank 0 would wait alone in a 9th step.
STREAM = (
    "data.streaming=true",
    "data.shuffle_buffer_size=20",
    "training.max_steps=16",
    "training.save_steps=4",
    "training.eval_steps=8",
    "training.max_eval_batches=2",
)


@pytest.fixture(scope="module")
def stream_corpus(tmp_path_factory) -> tuple[Path, Path]:
    lines = (SHARED / "data" / "pretrain" / "austen.txt").read_text(encoding="utf-8").splitlines()
    folder = tmp_path_factory.mktemp("stream-corpus")
    (folder / "train.txt").write_text("\n".join(lines[:10]) + "\n", encoding="utf-8")
    (folder / "validation.txt").write_text("\n".join(lines[400:440]) + "\n", encoding="utf-8")
    return folder / "train.txt", folder / "validation.txt"


def stream_args(corpus: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    train, validation = corpus
    return pretrain_args(train, out, *STREAM, f"data.validation_files={validation}", *extra, objective="clm")


@pytest.fixture(scope="module")
def reference(stream_corpus, tmp_path_factory) -> Path:
    """The uninterrupted one-process run, global batch 8."""
    out = tmp_path_factory.mktemp("stream-runs") / "reference"
    run_hftk(*stream_args(stream_corpus, out), check=True)
    return out


def assert_same_weights(expected_dir: Path, actual_dir: Path, rtol: float, atol: float) -> None:
    expected, actual = load_file(expected_dir / "model.safetensors"), load_file(actual_dir / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=rtol, atol=atol, msg=name)


def test_interrupted_streaming_run_resumes_on_the_same_blocks(stream_corpus, reference, tmp_path):
    """A run killed after step 13 resumes from its step-12 checkpoint, inside the second epoch:
    resuming must rebuild the stream at the checkpoint's position, or the weights differ from the
    uninterrupted reference."""
    resumed = tmp_path / "resumed"
    killed = run_hftk(*stream_args(stream_corpus, resumed), env={"HFTK_FAULT": "step:13"})
    assert killed.returncode != 0 and not (resumed / "metrics.json").exists()
    state = json.loads((resumed / "checkpoints" / "step-12" / "trainer_state.json").read_text())
    assert (state["epoch"], state["batches_in_epoch"]) == (1, 4)  # the resume below starts inside epoch 2
    result = run_hftk(*stream_args(stream_corpus, resumed), "--resume", check=True)
    assert "Resuming from" in result.stdout + result.stderr and "step-12" in result.stdout + result.stderr
    assert_same_weights(reference, resumed, rtol=1e-5, atol=1e-6)  # the tolerance of the cached path's resume test
    first, second = (json.loads((run / "metrics.json").read_text()) for run in (reference, resumed))
    assert first["tokens_seen"] == second["tokens_seen"] == 16 * 8 * 32
    assert second["eval_loss"] == pytest.approx(first["eval_loss"], rel=1e-5)


def test_two_processes_stream_the_blocks_of_one(stream_corpus, reference, tmp_path):
    """torchrun, 2 CPU processes of batch 4, one file: each keeps every 2nd block, so each step sees the same 8 blocks,
    and both stop each epoch where one process would."""
    two = tmp_path / "two"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "hftk",
         *stream_args(stream_corpus, two, "training.per_device_train_batch_size=4", "training.save_steps=100")],
        check=False, capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((two / "metrics.json").read_text())["tokens_seen"] == 16 * 8 * 32
    assert_same_weights(reference, two, rtol=1e-4, atol=1e-5)  # the tolerance of the cached path's 2-process test


@pytest.mark.parametrize(
    ("sets", "needle"),
    [
        (["data.validation_files=v.txt", "training.max_steps=null", "training.max_time_minutes=5"], "needs training.max_steps or training.max_tokens"),
        (["data.validation_files=v.txt", "training.num_train_epochs=2"], "not training.num_train_epochs"),
        ([], "needs data.validation_files"),
        (["data.validation_files=v.txt", "data.preprocessing_num_workers=2"], "preprocessing_num_workers is for the cached path"),
    ],
)
def test_streaming_recipe_errors(sets, needle):
    with pytest.raises(HftkError, match=needle):
        load_recipe(PretrainRecipe, "pretrain-default", ["data.streaming=true", *sets])


def test_streaming_keys_without_streaming_are_refused():
    with pytest.raises(HftkError, match="data.shuffle_buffer_size is only used with data.streaming"):
        load_recipe(PretrainRecipe, "pretrain-default", ["data.shuffle_buffer_size=10"])
    assert load_recipe(PretrainRecipe, "pretrain-default", ["data.streaming=true", "data.validation_files=v.txt"]).data.streaming
