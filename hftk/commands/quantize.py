"""`hftk quantize FOLDER -o OUT`: int8 weights and dynamic int8 activations for CPU inference.

The quantization itself is library code in `hftk.quantize` (load the result with
`hftk.quantize.load_quantized`); this module is the command around it.
"""

from __future__ import annotations

from pathlib import Path

from hftk.quantize import quantize_folder


def quantize(folder: Path, output_dir: Path, *, overwrite: bool = False) -> Path:
    """Quantize a saved model folder into `output_dir`; returns that folder."""
    return quantize_folder(folder, output_dir, overwrite=overwrite)
