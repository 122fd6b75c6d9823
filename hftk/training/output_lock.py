"""One run per output folder: an operating-system lock, held for the whole run.

Two runs writing one folder mix their recipes, checkpoints and logs, and one result is silently
lost. Every command that writes a folder holds this lock while it runs; a second run on the same
folder stops at once, with one line naming the first (pid, command, start time).

The lock is `filelock`'s (flock on POSIX, LockFileEx on Windows), the lock huggingface_hub puts
on its cache: the operating system drops it when its process ends, however it ends, so a killed
run never leaves a folder locked. The lock files live outside the folders they guard, one per
resolved folder path under `HF_HOME/hftk/locks/` (beside huggingface_hub's, datasets' and
evaluate's caches): inside, `--overwrite` (which empties the folder) would delete a held lock,
and every finished folder, and every Hub upload of one, would carry it. Beside each lock a small
JSON file says who holds it; it is written once the lock is won, so it never misnames a holder.

Several processes of one run (torchrun, accelerate launch) share one lock: the main process
takes it and tells the others whether the run may go on (`hold_for_run`).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from filelock import FileLock, Timeout

from hftk.errors import HftkError


def locks_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "hftk" / "locks"


def current_command() -> str:
    """This process's command line as the user typed it (`hftk pretrain ...`, however hftk was started)."""
    return shlex.join(["hftk", *sys.argv[1:]])


class OutputLock:
    """The lock of one output folder: `acquire()` wins it or raises a one-line HftkError naming the holder."""

    def __init__(self, folder: str | Path, command: str | None = None) -> None:
        self.folder = Path(folder).absolute().resolve()  # one lock per folder, however the path is spelt
        key = hashlib.sha256(str(self.folder).encode()).hexdigest()[:24]
        self.lock_path = locks_dir() / f"{key}.lock"
        self.holder_path = locks_dir() / f"{key}.json"
        self.command = command or current_command()
        self._lock = FileLock(self.lock_path)

    @property
    def is_held(self) -> bool:
        return self._lock.is_locked

    def acquire(self) -> OutputLock:
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise HftkError(
                f"cannot create the lock folder {self.lock_path.parent} ({error.strerror}): set HF_HOME to a writable folder"
            ) from None
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise HftkError(
                f"{self.folder} is in use by another run ({self.describe_holder()}); wait for it to end, "
                "stop it, or choose another output folder"
            ) from None
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        holder = {"folder": str(self.folder), "pid": os.getpid(), "command": self.command, "started": started}
        tmp = self.holder_path.with_name(f".{self.holder_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(holder) + "\n")
        os.replace(tmp, self.holder_path)
        return self

    def describe_holder(self) -> str:
        try:
            holder = json.loads(self.holder_path.read_text())
            return f"pid {holder['pid']}, `{holder['command']}`, started {holder['started']}"
        except (OSError, ValueError, KeyError):  # won a moment ago, not yet written
            return "a run that is just starting"

    def release(self) -> None:
        if self._lock.is_locked:
            self.holder_path.unlink(missing_ok=True)
            self._lock.release()

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


Function = TypeVar("Function", bound=Callable)


def locks_folder(folder_of: Callable[..., str | Path]) -> Callable[[Function], Function]:
    """Decorator for a one-process command: hold the lock of `folder_of(*args, **kwargs)` while it runs."""

    def decorate(function: Function) -> Function:
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with OutputLock(folder_of(*args, **kwargs)):
                return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


_HELD: dict[Path, OutputLock] = {}  # the locks this process holds for runs in progress (hold_for_run)


def hold_for_run(folder: str | Path, accelerator=None) -> None:
    """Lock `folder` until `release_for_run(folder)` (or this process ends); every process of the run raises alike.

    `accelerator`: the run's, when several processes run it; the main process alone takes the lock.
    Holding it already (a re-entrant call from the same run) is fine.
    """
    lock = OutputLock(folder)
    refusal = None
    if accelerator is None or accelerator.is_main_process:
        if lock.folder not in _HELD:
            try:
                _HELD[lock.folder] = lock.acquire()
            except HftkError as error:
                refusal = str(error)
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        refusal = broadcast_object_list([refusal], from_process=0)[0]
    if refusal:
        raise HftkError(refusal)


def holds(folder: str | Path) -> bool:
    """Does this process hold `folder`'s lock for a run?"""
    return Path(folder).absolute().resolve() in _HELD


def release_for_run(folder: str | Path) -> None:
    lock = _HELD.pop(Path(folder).absolute().resolve(), None)
    if lock is not None:
        lock.release()
