"""Training progress: tqdm's bar on a terminal, one plain line per logging step anywhere else.

A bar redraws itself with `\\r`; in a log file (stderr redirected, a CI job, `nohup`) every redraw
stays, and a short run leaves tens of kilobytes of half-lines. When stderr is not a terminal the
loop gets `LineProgress` instead, with the same calls, which prints the logging step's numbers
once (`set_postfix` is called once per logging step) and nothing in between.
"""

from __future__ import annotations

import sys
import time


def is_interactive() -> bool:
    return sys.stderr.isatty()


class LineProgress:
    """tqdm's interface as the loop uses it (update, set_postfix, write, close, total), one line per log."""

    def __init__(self, total: int | None, initial: int = 0, disable: bool = False, desc: str = "training", **_) -> None:
        self.total, self.n, self.disable, self.desc = total, initial, disable, desc
        self.start = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **values: str) -> None:
        if self.disable:
            return
        of = f"/{self.total:,}" if self.total else ""
        numbers = " ".join(f"{key}={value}" for key, value in values.items())
        # stdout, beside the evaluation lines (and silenced with them by --quiet)
        print(f"{self.desc} step {self.n:,}{of} {numbers} elapsed={time.perf_counter() - self.start:.0f}s", flush=True)

    def write(self, text: str) -> None:
        print(text, flush=True)

    def close(self) -> None:
        pass


def progress_bar(**kwargs):
    """A tqdm bar on a terminal, else a LineProgress (same keyword arguments)."""
    if is_interactive():
        from tqdm.auto import tqdm

        return tqdm(**kwargs)
    return LineProgress(**kwargs)
