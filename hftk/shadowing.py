"""Which `hftk` Python imports: the installed package, or a folder that shadows it.

Python imports the first `hftk` it finds from the script's folder on. Two look-alikes beat the
installed package there:

- a clone of the repository named `hftk` (no `__init__.py` at its top) becomes an empty
  *namespace package*: no hftk code runs on `import hftk`, the model types are never registered,
  and `from_pretrained` stops at transformers' remote-code prompt. Since nothing of hftk runs,
  `import hftk` cannot report it; the `hftk` command can, when run from such a folder
  (`clone_shadow_note`), and `hftk.__file__ is None` shows it in a script;
- a copy of the package folder (or a stale checkout on PYTHONPATH) is a regular package: its
  `__init__` runs, and `foreign_package_note` names both places.
Standard library only: this runs on every `import hftk`.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path


def installed_package_dir() -> Path | None:
    """The folder of the installed distribution's `hftk` package (an editable install: the project's), or None."""
    try:
        dist = metadata.distribution("hftk")
    except metadata.PackageNotFoundError:
        return None
    direct = dist.read_text("direct_url.json")
    if direct:
        info = json.loads(direct)
        if info.get("dir_info", {}).get("editable") and info.get("url", "").startswith("file://"):
            return Path(info["url"].removeprefix("file://")) / "hftk"
    return Path(str(dist.locate_file("hftk")))


def foreign_package_note(package_dir: Path) -> str | None:
    """One line when this `hftk` is not the installed one (None when it is, or nothing is installed)."""
    installed = installed_package_dir()
    if installed is None or not installed.exists():
        return None
    if installed.resolve() == package_dir.resolve():
        return None
    return (
        f"hftk is imported from {package_dir}, not from the installed hftk at {installed}: a copy or an old checkout "
        "comes first on the import path (the script's folder or PYTHONPATH); move or rename it"
    )


def clone_shadow_note(folder: Path) -> str | None:
    """One line when `folder/hftk` is a clone of the repository that scripts run from `folder` would import."""
    clone = folder / "hftk"
    if (clone / "__init__.py").exists() or not (clone / "hftk" / "__init__.py").is_file():
        return None
    return (
        f"note: {clone} is a clone of the hftk repository; Python scripts run from {folder} import it as an empty "
        "namespace package instead of the installed hftk (their models then stop at transformers' trust_remote_code "
        "prompt): run them from another folder or rename the clone"
    )
