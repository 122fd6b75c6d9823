"""`hftk export onnx FOLDER -o OUT`: ONNX graphs (fp32 and int8) checked against PyTorch.

The export is library code (`hftk.export.onnx`); this module reports what it measured.
"""

from __future__ import annotations

from pathlib import Path

from hftk.export.onnx import FP32_FILE, INT8_FILE


def export_onnx(folder: Path, output_dir: Path, *, int8: bool = True, overwrite: bool = False) -> list[str]:
    """Export, and the lines to print: each graph and its largest difference from PyTorch's outputs."""
    from hftk.export.onnx import export_onnx as export

    result = export(folder, output_dir, fp32=True, int8=int8, overwrite=overwrite)
    lines = [f"{result.folder / FP32_FILE}: max |ONNX - PyTorch| = {result.fp32_max_diff:.2e}"]
    if result.int8_max_diff is not None:
        lines.append(f"{result.folder / INT8_FILE}: max |int8 ONNX - PyTorch fp32| = {result.int8_max_diff:.2e}")
    return lines
