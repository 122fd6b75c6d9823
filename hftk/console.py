"""The `hftk` console entry point: imports nothing heavy, so Ctrl-C at any moment is one line.

`hftk.cli` imports Typer, pydantic and (per command) torch, which take seconds on a busy
machine; a Ctrl-C in the middle of an import surfaces as a KeyboardInterrupt -- or as another
exception raised while the interrupted import unwinds -- with a traceback. Everything here
turns that into "interrupted", exit 130, as Ctrl-C in training already is.
"""

from __future__ import annotations

import sys

INTERRUPTED_EXIT = 130


def caused_by_interrupt(error: BaseException | None) -> bool:
    """Whether `error` is a KeyboardInterrupt or was raised while one unwound."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def main() -> None:
    from pathlib import Path

    from hftk.shadowing import clone_shadow_note

    note = clone_shadow_note(Path.cwd())  # the command itself is fine; scripts run here would not be
    if note:
        sys.stderr.write(note + "\n")
    try:
        from hftk.cli import main as cli_main

        cli_main()
    except SystemExit:
        raise
    except BaseException as error:
        if not caused_by_interrupt(error) or "--debug" in sys.argv:
            raise
        sys.stderr.write("interrupted\n")
        sys.exit(INTERRUPTED_EXIT)


if __name__ == "__main__":
    main()
