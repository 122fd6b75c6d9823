"""An output folder the user cannot write to is one line and exit code 2 for every command (issue 28)."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest


@contextlib.contextmanager
def read_only(folder: Path):
    """Make `folder` unwritable for this process: chmod for a normal user, the immutable flag for root."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = lambda: folder.chmod(0o755)  # noqa: E731
    else:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("running as root without chattr +i: no way to make a folder unwritable here")
        undo = lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)  # noqa: E731
    try:
        yield folder
    finally:
        undo()


def test_every_command_refuses_an_unwritable_output_folder_in_one_line(tmp_path):
    from hftk.models import HftkBertConfig, HftkBertForSequenceClassification

    model = tmp_path / "model"
    HftkBertForSequenceClassification(HftkBertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)).save_pretrained(model)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("It is a truth universally acknowledged.\n" * 20)
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "fine", "label": "good"}\n' * 4)
    with read_only(tmp_path / "ro") as ro:
        commands = {
            "quantize": ["quantize", str(model), "-o", str(ro / "int8")],
            "quantize_into_it": ["quantize", str(model), "-o", str(ro)],
            "pretrain": ["pretrain", "-o", str(ro / "out"), "--set", f"data.train_files={corpus}"],
            "finetune": ["finetune", "classification", "-m", str(model), "-o", str(ro / "out"), "--set", f"data.train_file={rows}", "--set", f"data.validation_file={rows}"],
            "evaluate": ["evaluate", "classification", "-m", str(model), "-o", str(ro / "out"), "--set", f"data.validation_file={rows}"],
            "convert": ["convert", str(model), str(ro / "out")],
            "run": ["run", "pipeline-tiny", "-o", str(ro / "out")],
        }
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

        def run(args: list[str]) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "hftk", *args], capture_output=True, text=True, env=env, timeout=600)

        with ThreadPoolExecutor(max_workers=2) as pool:
            results = dict(zip(commands, pool.map(run, commands.values())))
        assert list(ro.iterdir()) == []  # nothing written, not even a staging folder
    for name, result in results.items():
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, (name, result.stderr[-2000:])
        assert str(ro) in errors[0] and ("not writable" in errors[0] or "cannot write" in errors[0]), (name, errors[0])


def test_a_write_refused_deep_inside_a_command_is_one_line(monkeypatch, capsys):
    """The CLI's safety net: an OSError the user can fix (read-only, permissions, disk full) that no check caught."""
    import hftk.cli
    import hftk.commands.quantize

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", "/mnt/models/int8/model_int8.pt")

    monkeypatch.setattr(hftk.commands.quantize, "quantize", refuse)
    monkeypatch.setattr(sys, "argv", ["hftk", "quantize", "some-model", "-o", "/mnt/models/int8"])
    with pytest.raises(SystemExit) as exit_:
        hftk.cli.main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: cannot write or read /mnt/models/int8/model_int8.pt (Read-only file system); check its permissions or choose another --output-dir"
    )


def test_an_oserror_that_is_not_the_users_keeps_its_traceback(monkeypatch):
    import hftk.cli
    import hftk.commands.quantize

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(hftk.commands.quantize, "quantize", broken)
    monkeypatch.setattr(sys, "argv", ["hftk", "quantize", "some-model", "-o", "out"])
    with pytest.raises(OSError, match="Input/output error"):
        hftk.cli.main()
