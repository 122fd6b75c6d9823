"""`hftk quantize FOLDER -o OUT [--format onnx|torchao]`: an int8 copy for CPU inference.

The formats are library code (`hftk.quantize`, `hftk.export`); this module is the command around them.
"""

from __future__ import annotations

from pathlib import Path

from hftk.quantize import DEFAULT_FORMAT, quantize_folder


def quantize(folder: Path, output_dir: Path, *, format: str | None = None, overwrite: bool = False) -> Path:
    """Quantize a saved model folder into `output_dir`; returns that folder."""
    return quantize_folder(folder, output_dir, overwrite=overwrite, format=format or DEFAULT_FORMAT)
