"""`hftk pretrain` end to end, as a user runs it: a subprocess per run, tiny model, tiny corpus."""

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

SHARED = Path(os.environ.get("HFTK_SHARED_DIR", Path(__file__).resolve().parents[2] / ".." / "shared")).resolve()

TINY = [
    "model.config.hidden_size=32",
    "model.config.num_hidden_layers=2",
    "model.config.num_attention_heads=2",
    "model.config.intermediate_size=64",
    "model.config.max_position_embeddings=64",
    "tokenizer.vocab_size=300",
    "data.max_seq_length=32",
    "data.validation_split_percentage=10",
    "training.per_device_train_batch_size=8",
    "training.per_device_eval_batch_size=8",
    "training.max_time_minutes=null",
    "training.eval_steps=4",
    "training.logging_steps=2",
    "training.save_steps=4",
    "training.num_threads=1",
    "training.report_to=[]",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    lines = (SHARED / "data" / "pretrain" / "austen.txt").read_text(encoding="utf-8").splitlines()[:400]
    path = tmp_path_factory.mktemp("corpus") / "austen.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_hftk(*args: str, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "hftk", *args], capture_output=True, text=True, env=full_env, timeout=300
    )
    if check and result.returncode != 0:
        raise AssertionError(f"hftk {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def pretrain_args(corpus: Path, out: Path, *extra: str, objective: str = "mlm") -> list[str]:
    recipe = "pretrain-default" if objective == "mlm" else "pretrain-gpt"
    sets = [*TINY, f"data.train_files={corpus}", *extra]
    return ["pretrain", recipe, "-o", str(out), *[arg for s in sets for arg in ("--set", s)]]


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_mlm_run_writes_a_loadable_folder_and_falling_eval_loss(corpus, tmp_path):
    out = tmp_path / "mlm"
    run_hftk(*pretrain_args(corpus, out, "training.max_steps=12", "training.learning_rate=3e-3"), check=True)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "recipe.yaml", "metrics.json", "loss.png", "README.md"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "log_history.json").read_text())
    evals = [r["eval_loss"] for r in history if "eval_loss" in r]
    assert len(evals) >= 3 and evals[-1] < evals[0]
    assert metrics["train_steps"] == 12 and metrics["tokens_seen"] == 12 * 8 * 32
    assert metrics["perplexity"] == pytest.approx(torch.tensor(metrics["eval_loss"]).exp().item(), rel=1e-5)

    import hftk  # noqa: F401  (registers the Auto classes)
    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    model = AutoModelForMaskedLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    predictions = pipeline("fill-mask", model=model, tokenizer=tokenizer)(f"she was {tokenizer.mask_token} happy")
    assert len(predictions) == 5 and all(0 <= p["score"] <= 1 for p in predictions)
    # The recipe's fine-tuning-facing choices travel in the checkpoint: a normalised embedding layer,
    # and mean pooling for the classifiers built on it (masked LM leaves [CLS] untrained).
    assert model.model.encoder.embeddings.norm is not None
    assert model.config.classifier_pooling == "mean"
    assert model.config.use_pooler is False  # no objective trains one: no fresh layer outside a classifier head
    # A finished run keeps what continuing needs: its newest checkpoint (with a loadable model and
    # tokenizer), not step-8 as well, and not its datasets cache (kept inside the run folder while it runs).
    checkpoints = sorted((out / "checkpoints").iterdir())
    assert [c.name for c in checkpoints] == ["step-12"]
    assert AutoTokenizer.from_pretrained(checkpoints[0] / "model").vocab_size == tokenizer.vocab_size
    assert not (out / "datasets-cache").exists()


def test_a_finished_run_keeps_no_checkpoint_when_asked_and_says_where_its_cache_went(corpus, tmp_path):
    out = tmp_path / "mlm"
    result = run_hftk(*pretrain_args(corpus, out, "training.max_steps=4", "output.keep_checkpoint=false"), check=True)
    assert not (out / "checkpoints").exists() and not (out / "datasets-cache").exists()
    assert f"datasets cache: {out / 'datasets-cache'}" in result.stdout
    assert (out / "model.safetensors").is_file() and json.loads((out / "metrics.json").read_text())["train_steps"] == 4


def test_clm_run_generates(corpus, tmp_path):
    out = tmp_path / "clm"
    run_hftk(*pretrain_args(corpus, out, "training.max_steps=6", objective="clm"), check=True)
    import hftk  # noqa: F401
    from transformers import pipeline

    generator = pipeline("text-generation", model=str(out))
    text = generator("It is a truth", max_new_tokens=5, do_sample=False)[0]["generated_text"]
    assert text.startswith("It is a truth") and len(text) > len("It is a truth")


@pytest.mark.parametrize("fault", ["step:6", "checkpoint:8", "sigint:5"])
def test_kill_and_resume_matches_uninterrupted_run(corpus, tmp_path, fault):
    """SIGKILL mid-run (after a step, or while a checkpoint is half written) or Ctrl-C, resume, compare weights.

    The recipe has a time budget beside the step budget: the schedule follows the steps, so the
    runs match. Each run trains its own tokenizer, in its own process: they must agree too.
    """
    # Dropout on: the resumed run must draw the same dropout masks (the global RNG) as the uninterrupted one.
    args = ("training.max_steps=12", "training.save_steps=4", "training.max_time_minutes=30", "model.config.hidden_dropout_prob=0.1")
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    run_hftk(*pretrain_args(corpus, reference, *args), check=True)

    if fault.startswith("sigint"):
        stopped = run_hftk(*pretrain_args(corpus, resumed, *args), env={"HFTK_FAULT": "step:5", "HFTK_FAULT_SIGNAL": "INT"})
        assert stopped.returncode == 130, stopped.stderr[-2000:]
        assert stopped.stderr.strip().splitlines()[-1] == "stopped at step 6; rerun the same command with --resume to continue"
        assert "Traceback" not in stopped.stderr
        assert (resumed / "checkpoints" / "step-6").is_dir()  # written on the way out
    else:
        killed = run_hftk(*pretrain_args(corpus, resumed, *args), env={"HFTK_FAULT": fault})
        assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (resumed / "metrics.json").exists()
    again = run_hftk(*pretrain_args(corpus, resumed, *args))
    assert_one_line_error(again, "interrupted run", "--resume")
    changed = run_hftk(*pretrain_args(corpus, resumed, *args, "training.learning_rate=3e-4"), "--resume")
    assert_one_line_error(changed, "checkpoint was trained with another recipe: training.learning_rate", "-> 0.0003", "--overwrite")
    # What cannot change training may differ: this session logs every step, and still ends on the reference weights.
    run_hftk(*pretrain_args(corpus, resumed, *args, "training.logging_steps=1"), "--resume", check=True)

    expected, actual = load_file(reference / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
    first = json.loads((reference / "metrics.json").read_text())
    second = json.loads((resumed / "metrics.json").read_text())
    assert second["tokens_seen"] == first["tokens_seen"]
    assert second["eval_loss"] == pytest.approx(first["eval_loss"], rel=1e-5)
    # The resumed run reloaded its tokenizer from the checkpoint; it is saved as trained, without
    # transformers' load-time `is_local`/`local_files_only` (issue 17), so both runs' files agree.
    configs = [json.loads((run / "tokenizer_config.json").read_text()) for run in (reference, resumed)]
    assert configs[0] == configs[1] and not {"is_local", "local_files_only"} & set(configs[1])
    for metrics in (first, second):
        assert metrics["train_stopped_by"] == "max_steps" and metrics["train_planned_steps"] == 12
        # wall time is the whole command (set-up included), summed over sessions: never below the loop's time
        assert metrics["wall_time_seconds"] >= metrics["train_runtime_seconds"] > 0


def test_time_budget_beside_a_step_budget_stops_early_and_says_so(corpus, tmp_path):
    out = tmp_path / "short"
    result = run_hftk(
        *pretrain_args(corpus, out, "training.max_steps=100000", "training.max_time_minutes=0.001", "training.save_steps=100000"),
        check=True,
    )
    assert "training.max_time_minutes=0.001 reached at step" in result.stdout + result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_stopped_by"] == "max_time_minutes"
    assert metrics["train_planned_steps"] == 100000 and 1 <= metrics["train_steps"] < 100000


def test_two_processes_match_one_process_with_the_same_global_batch(corpus, tmp_path):
    """torchrun with 2 CPU processes (gloo): completes, rank 0 alone writes, same result as 1 process."""
    one, two = tmp_path / "one", tmp_path / "two"
    common = ("training.max_steps=6", "training.save_steps=100", "training.eval_steps=100")
    run_hftk(*pretrain_args(corpus, one, *common, "training.per_device_train_batch_size=8", objective="clm"), check=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "hftk",
         *pretrain_args(corpus, two, *common, "training.per_device_train_batch_size=4", objective="clm")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((two / "metrics.json").read_text())
    assert metrics["tokens_seen"] == 6 * 8 * 32  # global batch counted across both processes
    expected, actual = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-4, atol=1e-5, msg=name)
    # Only rank 0 wrote the run folder: exactly one set of artifacts, no stray per-rank files.
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["step-6"]
    assert not list(two.glob(".final.tmp*"))


# ----------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit 2, no traceback, no folder that looks finished
# ----------------------------------------------------------------------------------------------


def test_missing_corpus(tmp_path):
    result = run_hftk(*pretrain_args(tmp_path / "nope.txt", tmp_path / "out"))
    assert_one_line_error(result, "nope.txt")
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_empty_corpus(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert_one_line_error(run_hftk(*pretrain_args(empty, tmp_path / "out")), "empty")


def test_binary_and_non_utf8_corpus(tmp_path):
    binary = tmp_path / "weights.txt"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    assert_one_line_error(run_hftk(*pretrain_args(binary, tmp_path / "a")), "weights.txt")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1") * 50)
    assert_one_line_error(run_hftk(*pretrain_args(latin, tmp_path / "b")), "UTF-8")


def test_recipe_errors(tmp_path, corpus):
    broken = tmp_path / "broken.yaml"
    broken.write_text("training:\n  learning_rate: [1\n")
    assert_one_line_error(run_hftk("pretrain", str(broken)), "YAML syntax error", "broken.yaml")
    assert_one_line_error(run_hftk(*pretrain_args(corpus, tmp_path / "o", "training.lerning_rate=1")), "training.lerning_rate")
    assert_one_line_error(run_hftk(*pretrain_args(corpus, tmp_path / "o", "training.max_steps=many")), "training.max_steps")
    assert_one_line_error(
        run_hftk(*pretrain_args(corpus, tmp_path / "o", "data.max_seq_length=100")), "max_seq_length", "max_position_embeddings"
    )
    assert not (tmp_path / "o").exists()  # validation happens before anything is written


def test_finished_run_is_not_overwritten_and_nothing_to_resume(corpus, tmp_path):
    out = tmp_path / "done"
    run_hftk(*pretrain_args(corpus, out, "training.max_steps=2"), check=True)
    before = (out / "model.safetensors").read_bytes()
    assert_one_line_error(run_hftk(*pretrain_args(corpus, out, "training.max_steps=2")), "finished run", "--overwrite")
    assert (out / "model.safetensors").read_bytes() == before
    assert_one_line_error(run_hftk(*pretrain_args(corpus, tmp_path / "fresh", "training.max_steps=2"), "--resume"), "nothing to resume")
    run_hftk(*pretrain_args(corpus, out, "training.max_steps=2"), "--overwrite", check=True)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(corpus, tmp_path):
    out = tmp_path / "diverge"
    result = run_hftk(
        *pretrain_args(
            corpus, out, "training.max_steps=40", "training.learning_rate=1e30", "training.max_grad_norm=null",
            "training.warmup_ratio=0", "training.save_steps=1",
        )
    )
    assert_one_line_error(result, "loss became", "learning_rate")
    assert not (out / "metrics.json").exists()
    assert "last good checkpoint" in result.stderr or "no checkpoint" in result.stderr
