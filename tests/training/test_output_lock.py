"""The output-folder lock: one run per folder, a refusal that names the holder, nothing stuck after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hftk.errors import HftkError
from hftk.training.output_lock import OutputLock, hold_for_run, holds, release_for_run

ROOT = Path(__file__).resolve().parents[2]
# A second process that takes the lock, says so, and waits (to be killed); it imports no torch.
HOLDER = """
import sys, time
from hftk.training.output_lock import OutputLock
lock = OutputLock(sys.argv[1], command="hftk pretrain -o held").acquire()  # kept: a lock that is garbage-collected is released
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture()
def hf_home(tmp_path, monkeypatch) -> dict[str, str]:
    """Locks under a private HF_HOME, for this process and the ones it starts."""
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    return {**os.environ, "HF_HOME": str(home), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def start_holder(folder: Path, env: dict[str, str]) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True, env=env)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_run_is_refused_naming_the_first_and_a_killed_run_leaves_nothing_locked(tmp_path, hf_home):
    folder = tmp_path / "run"
    holder = start_holder(folder, hf_home)
    try:
        with pytest.raises(HftkError) as refusal:
            OutputLock(tmp_path / "." / "run").acquire()  # the same folder, spelt differently
        message = str(refusal.value)
        assert message.startswith(f"{folder} is in use by another run (pid {holder.pid}, `hftk pretrain -o held`, started 20")
        assert message.endswith("wait for it to end, stop it, or choose another output folder") and "\n" not in message
        OutputLock(tmp_path / "other").acquire().release()  # another folder is free
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    started = time.monotonic()
    lock = OutputLock(folder).acquire()  # the operating system dropped the killed holder's lock
    assert time.monotonic() - started < 5
    lock.release()
    assert not lock.holder_path.exists()


def test_a_symlinked_path_is_the_same_folder(tmp_path, hf_home):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with OutputLock(tmp_path / "real"):
        with pytest.raises(HftkError, match="in use by another run"):
            OutputLock(tmp_path / "link").acquire()
    OutputLock(tmp_path / "link").acquire().release()


def test_a_run_holds_its_folder_until_released_and_taking_it_again_is_harmless(tmp_path, hf_home):
    folder = tmp_path / "run"
    hold_for_run(folder)
    hold_for_run(folder)  # the same run asking again
    assert holds(folder)
    with pytest.raises(HftkError, match="in use by another run"):
        OutputLock(folder).acquire()
    release_for_run(folder)
    assert not holds(folder)
    OutputLock(folder).acquire().release()


def test_an_unwritable_lock_folder_is_a_one_line_error(tmp_path, hf_home):
    from huggingface_hub import constants

    blocker = tmp_path / "blocker"
    blocker.write_text("a file where HF_HOME should be\n")
    constants.HF_HOME = str(blocker)
    with pytest.raises(HftkError, match=r"cannot create the lock folder .*blocker/hftk/locks .*set HF_HOME to a writable folder"):
        OutputLock(tmp_path / "run").acquire()
