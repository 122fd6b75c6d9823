"""The benchmark scripts that must run unattended elsewhere: their CPU dry runs, and their arithmetic.

benchmarks/gpu_check.sh runs for real only on a CUDA machine and benchmarks/time_to_quality.py for
real only over hours; here each runs its dry run (tiny shapes on CPU / the plan without training),
and the report's arithmetic is checked against hand-computed cases.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
}


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_check_dry_run_runs_every_part_on_cpu_and_writes_the_results_file(tmp_path):
    output = tmp_path / "RESULTS-gpu.md"
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--output", str(output)],
        capture_output=True, text=True, env={**ENV, "PYTHON": sys.executable}, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = output.read_text()
    assert text.startswith("## GPU check\n")
    assert re.search(r"^- command: `bash benchmarks/gpu_check.sh --dry-run", text, re.M)
    assert re.search(r"^- date: \d{4}-\d\d-\d\d \d\d:\d\d UTC; commit ", text, re.M)
    for model in ("hftk_bert", "modernbert", "modernbert-sparse", "hftk_gpt", "llama"):
        row = re.search(rf"^\| {re.escape(model)} \| ([\d.]+) \| (\d+) \| ([\d.]+) \| ([\d,]+) \|", text, re.M)
        assert row, model
        tokens, step_ms, tokens_per_s = int(row[2]), float(row[3]), float(row[4].replace(",", ""))
        assert tokens_per_s == pytest.approx(tokens / (step_ms / 1e3), rel=0.02)  # the table is self-consistent
    assert "MFU >= 45 %: n/a (no peak known for this device)" in text  # no invented peak on a CPU
    for model in ("hftk_bert", "modernbert", "hftk_gpt", "llama"):
        assert re.search(rf"^\| {model} \| \S", text, re.M)  # its fused-attention row
    assert re.search(r"^\| hftk_gpt \| [\d,]+ \| [\d.]+ \|$", text, re.M)  # generate
    assert re.search(r"^- passed: 2 steps, eval loss [\d.]+, loads as HftkGptForCausalLM", text, re.M)


def test_gpu_check_without_cuda_says_so_in_one_line_and_exits_2(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--output", str(tmp_path / "r.md")],
        capture_output=True, text=True, env={**ENV, "CUDA_VISIBLE_DEVICES": ""}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "no CUDA device" in done.stderr and "--dry-run" in done.stderr
    assert not (tmp_path / "r.md").exists()


def test_gpu_check_glu_width_matches_the_plain_feed_forward_parameters():
    gpu_check = load_script("gpu_check")
    width = gpu_check.glu_width(gpu_check.REAL)  # 3 x 768 x width against 2 x 768 x 3072
    assert width % 64 == 0 and abs(3 * width - 2 * 3072) <= 3 * 32


@pytest.mark.slow
def test_time_to_quality_dry_run_matches_every_arm_to_hftks_shape_and_parameters(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "time_to_quality.py"), "--dry-run", "--workdir", str(tmp_path)],
        capture_output=True, text=True, env=ENV, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    counts = dict(re.findall(r"^  (\S+) +[\d.]+ M parameters \(([\d.]+) x hftk's\)", done.stdout, re.M))
    expected = {"hftk", "hftk-gpt", *(f"{family}-lr{lr}" for family in ("modernbert-15", "modernbert-25", "bert", "llama", "gpt2") for lr in ("0.0005", "0.001"))}
    assert set(counts) == expected
    assert all(abs(float(ratio) - 1) <= 0.02 for ratio in counts.values()), counts
    modernbert = json.loads((tmp_path / "configs" / "modernbert-25" / "config.json").read_text())
    assert (modernbert["num_hidden_layers"], len(modernbert["layer_types"]), modernbert["hidden_size"]) == (4, 4, 256)
    # Every arm reads the same split and tokenizer; the HF arms get hftk's schedule.
    train_file = tmp_path / "data" / "train.txt"
    for line in done.stdout.splitlines():
        if line.startswith(("modernbert", "bert", "llama", "gpt2")):
            assert f"--train_file {train_file}" in line and "--warmup_steps 0.06" in line and "--lr_scheduler_type linear" in line
        elif line.startswith(("hftk:", "hftk-gpt:")):
            assert f"data.train_files=[{train_file}]" in line and "training.num_threads=1" in line
    assert len((tmp_path / "data" / "valid.txt").read_text().splitlines()) == 206  # hftk's 2 % of 10,298 paragraphs


def test_minutes_to_reach_interpolates_between_checkpoints():
    ttq = load_script("time_to_quality")
    curve = [(0, 0.0, 9.0), (10, 2.0, 5.0), (20, 4.0, 3.0)]
    assert ttq.minutes_to_reach(curve, 4.0) == pytest.approx(3.0)  # halfway between 5.0 (2 min) and 3.0 (4 min)
    assert ttq.minutes_to_reach(curve, 5.0) == pytest.approx(2.0)
    assert ttq.minutes_to_reach(curve, 2.9) is None
    assert ttq.minutes_to_reach(curve, 9.5) == 0.0


def test_best_of_family_keeps_the_learning_rate_with_the_lower_final_loss():
    ttq = load_script("time_to_quality")
    arms = ttq.make_arms(["hftk", "bert"], ["mlm"], [5e-4, 1e-3])
    assert [a.name for a in arms] == ["hftk", "bert-lr0.0005", "bert-lr0.001"]
    curves = {"hftk": [(0, 0, 9.0), (5, 1, 4.0)], "bert-lr0.0005": [(0, 0, 9.0), (5, 1, 6.0)], "bert-lr0.001": [(0, 0, 9.0), (5, 1, math.log(300))]}
    assert [a.name for a in ttq.best_of_family(arms, curves)] == ["hftk", "bert-lr0.001"]
