"""The command line of a Python that has every installed package but cannot import hftk."""

from __future__ import annotations

import sys
from pathlib import Path


def site_packages() -> str:
    """This interpreter's site-packages folders, '|'-joined for `sys.path.extend(argv[1].split('|'))`.

    Taken from `sys.path`, so a venv created with `--system-site-packages` passes the system's folder
    too; the child runs with `-I -S`, which skips their .pth files and so the editable hftk.
    """
    folders = [entry for entry in sys.path if Path(entry).name in ("site-packages", "dist-packages")]
    return "|".join(dict.fromkeys(folders))
