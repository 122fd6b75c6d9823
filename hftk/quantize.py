"""`hftk quantize FOLDER -o OUT`: an int8 copy for CPU inference, in a format standard tools load.

Formats (`--format`):
- `torchao`: transformers' own torchao integration (hftk.export.torchao_int8): model.safetensors
  with int8 Linear weights, the scheme in config.json's `quantization_config`;
  `AutoModelFor*.from_pretrained(OUT)` loads it, and `hftk evaluate`, pipelines and `hftk push` take it.
- `onnx`: an int8 ONNX graph for ONNX Runtime (hftk.export.onnx), `OUT/model_quantized.onnx`.
The default is the faster of the two on CPU (benchmarks/RESULTS-inference.md).

Folders written before (`model_int8.pt` + `quantization.json`: torch.ao's dynamic quantization,
deprecated by PyTorch) still load with `load_quantized`; `hftk quantize` rewrites them from their
fp32 source.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import torch
from transformers import AutoConfig

from hftk.errors import HftkError
from hftk.training.output_lock import locks_folder
from hftk.training.outputs import check_output_dir
from hftk.export.folders import model_class

WEIGHTS = "model_int8.pt"
MARKER = "quantization.json"


def is_quantized_folder(path: str | Path) -> bool:
    return (Path(path) / MARKER).is_file()


# Weight quantization schemes: a scale per output channel (the default) or one per tensor (the
# only scheme before 2026-12-07; folders written then load with it).
WEIGHT_SCHEMES = ("per_channel", "per_tensor")
DEFAULT_WEIGHT_SCHEME = "per_channel"


def _qconfig(scheme: str):
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

    return {"per_channel": per_channel_dynamic_qconfig, "per_tensor": default_dynamic_qconfig}[scheme]


def quantize_model(model: torch.nn.Module, scheme: str = DEFAULT_WEIGHT_SCHEME) -> torch.nn.Module:
    """Dynamic int8 quantization of every Linear (in place on a copy's modules; returns the quantized model).

    A tied LM head (hftk_gpt, hftk_seq2seq) is quantized too: it is the largest
    Linear, most of a decoding step. The input embedding stays the fp32 table (a lookup gains
    nothing from int8 dynamic quantization), so the tie becomes two copies of one table made at
    the same moment: the fp32 rows for lookups and their int8 packing for the projection, apart
    by at most half a quantization step. They cannot drift, as the int8 model is inference-only;
    keeping one tensor is not possible, as the quantized Linear packs its weight into fbgemm's
    own layout. Both are in the saved state dict, so loading needs no re-tying.
    """
    with warnings.catch_warnings():  # torch.ao.quantization's deprecation notices, once per call
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model.eval(), {torch.nn.Linear: _qconfig(scheme)}, dtype=torch.qint8)


FORMATS = ("onnx", "torchao")
DEFAULT_FORMAT = "onnx"  # the fastest int8 path standard tools load (benchmarks/RESULTS-inference.md)


@locks_folder(lambda source, output_dir, **_: output_dir)
def quantize_folder(source: str | Path, output_dir: str | Path, overwrite: bool = False, format: str = DEFAULT_FORMAT) -> Path:
    """The int8 copy of the model saved in `source`, in `output_dir` (atomic: written aside, then moved)."""
    check_output_dir(Path(output_dir))
    if format == "torchao":
        from hftk.export.torchao_int8 import quantize_torchao

        return quantize_torchao(source, output_dir, overwrite=overwrite)
    if format == "onnx":
        from hftk.export.onnx import export_onnx

        return export_onnx(source, output_dir, fp32=False, int8=True, overwrite=overwrite).folder
    raise HftkError(f"unknown int8 format {format!r}: choose one of {', '.join(FORMATS)}")


def write_legacy_folder(source: str | Path, output_dir: str | Path, overwrite: bool = False) -> Path:
    """The format `hftk quantize` wrote before torchao (torch.ao, model_int8.pt): for benchmarks and compatibility tests."""
    source, output_dir = Path(source), Path(output_dir)
    if not (source / "config.json").is_file():
        raise HftkError(f"{source} has no config.json: point hftk quantize at a saved model folder")
    if is_quantized_folder(source):
        raise HftkError(f"{source} is already quantized")
    if output_dir.exists() and output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise HftkError(f"{output_dir} exists and is not empty; pass --overwrite or choose another -o")
    check_output_dir(output_dir)
    if not os.access(output_dir.absolute().parent, os.W_OK | os.X_OK):  # the int8 folder is staged beside it
        raise HftkError(f"cannot write beside {output_dir}: {output_dir.absolute().parent} is not writable; choose another -o")
    config = AutoConfig.from_pretrained(source)
    cls = model_class(config)
    model = cls.from_pretrained(source, dtype=torch.float32).eval()
    quantized = quantize_model(model)
    tmp = output_dir.with_name(f".{output_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config.save_pretrained(tmp)
    for item in source.iterdir():  # tokenizer files and model code (auto_map), not the fp32 weights
        if item.is_file() and (item.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")) or item.suffix == ".py"):
            shutil.copy2(item, tmp / item.name)
    torch.save(quantized.state_dict(), tmp / WEIGHTS)
    info = {
        "method": "torch.ao.quantization.quantize_dynamic", "dtype": "qint8", "modules": ["Linear"],
        "weight_scheme": DEFAULT_WEIGHT_SCHEME, "architecture": cls.__name__, "source": str(source),
    }
    (tmp / MARKER).write_text(json.dumps(info, indent=2) + "\n")
    if output_dir.exists():
        shutil.rmtree(output_dir)
    tmp.rename(output_dir)
    return output_dir


def load_quantized(folder: str | Path) -> torch.nn.Module:
    """The int8 model saved by `quantize_folder`, ready for CPU inference (eval mode)."""
    folder = Path(folder)
    if not is_quantized_folder(folder):
        raise HftkError(f"{folder} is not an `hftk quantize` folder (no {MARKER})")
    import hftk  # noqa: F401  (registers hftk's model types)

    config = AutoConfig.from_pretrained(folder)
    scheme = json.loads((folder / MARKER).read_text()).get("weight_scheme", "per_tensor")
    if scheme not in WEIGHT_SCHEMES:
        raise HftkError(f"{folder / MARKER}: unknown weight_scheme {scheme!r}; this hftk reads {', '.join(WEIGHT_SCHEMES)}")
    model = quantize_model(model_class(config)(config), scheme)
    with warnings.catch_warnings():  # torch's own qtensor unpickler reads storage.device: its deprecation, not ours
        warnings.filterwarnings("ignore", message="TypedStorage is deprecated", category=UserWarning)
        state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
