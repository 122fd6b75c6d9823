"""A folder that shadows the installed hftk is named (issue 28, item 9)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hftk
from hftk.shadowing import clone_shadow_note, installed_package_dir

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}


def make_clone(folder: Path) -> Path:
    """A clone of the repository named `hftk`: pyproject.toml and the package inside, no __init__.py at its top."""
    clone = folder / "hftk"
    (clone / "hftk").mkdir(parents=True)
    (clone / "hftk" / "__init__.py").write_text("")
    (clone / "pyproject.toml").write_text('[project]\nname = "hftk"\n')
    return clone


def test_the_hftk_command_warns_when_its_folder_holds_a_clone_that_scripts_would_import(tmp_path):
    clone = make_clone(tmp_path)
    assert clone_shadow_note(tmp_path).startswith(f"note: {clone} is a clone of the hftk repository")
    assert clone_shadow_note(clone) is None  # inside the clone, `hftk/` is the real package
    assert clone_shadow_note(Path(hftk.__file__).parents[1]) is None  # the repository root: same
    command = shutil.which("hftk", path=str(Path(sys.executable).parent))
    if command is None:
        pytest.skip("no installed `hftk` console script beside this Python")
    result = subprocess.run([command, "recipes", "list"], cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=120)
    assert result.returncode == 0 and "pipeline-tiny" in result.stdout
    assert result.stderr.splitlines() == [clone_shadow_note(tmp_path)]


def test_a_copied_package_says_it_is_not_the_installed_one(tmp_path):
    installed = installed_package_dir()
    if installed is None or installed.resolve() != Path(hftk.__file__).parent.resolve():
        pytest.skip("this hftk is not the installed distribution's")
    shutil.copytree(Path(hftk.__file__).parent, tmp_path / "hftk", ignore=shutil.ignore_patterns("__pycache__", "resources"))
    result = subprocess.run([sys.executable, "-c", "import hftk; print(hftk.__file__)"], cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == str(tmp_path / "hftk" / "__init__.py")
    assert f"hftk is imported from {tmp_path / 'hftk'}, not from the installed hftk at {installed}" in result.stderr
    quiet = subprocess.run([sys.executable, "-c", "import hftk"], cwd=installed.parent, capture_output=True, text=True, env=ENV, timeout=120)
    assert quiet.returncode == 0 and quiet.stderr == ""  # the installed package itself: nothing to say
