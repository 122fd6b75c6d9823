"""`hftk accelerate-config [NAME]`: the Accelerate configs that ship with hftk, for `accelerate launch --config_file`."""

from __future__ import annotations

from pathlib import Path

from hftk.errors import HftkError
from hftk.training.distributed import accelerate_config_paths


def config_listing() -> list[str]:
    """One line per shipped config: its name and its path."""
    return [f"{stem:12s} {path}" for stem, path in accelerate_config_paths().items()]


def config_path(name: str) -> Path:
    """The path of the shipped config NAME (`.yaml` optional)."""
    paths = accelerate_config_paths()
    if name.removesuffix(".yaml") not in paths:
        raise HftkError(f"no shipped Accelerate config {name!r}; choose one of: {', '.join(paths)}")
    return paths[name.removesuffix(".yaml")]
