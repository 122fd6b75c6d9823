"""`hftk quantize FOLDER -o OUT`: int8 weights with dynamic int8 activations for CPU inference.

Every `nn.Linear` becomes PyTorch's dynamically quantized linear (`torch.ao.quantization.
quantize_dynamic`, fbgemm/x86 kernels): weights stored as int8 with a scale per output channel,
activations quantized on the fly per batch (per channel rather than per tensor: on the distilled
fine_foods student 0.836 against fp32's 0.840, per tensor 0.831, at ~10 % less speed; benchmarks/RESULTS-compression.md).
Embeddings and norms stay fp32. Chosen over torchao
(eager int8 on this CPU was 5x slower than this path; it needs torch.compile to be fast) and
ONNX Runtime (a 100+ MB dependency chain and an export step); see benchmarks/RESULTS-compression.md.

The folder holds the fp32 config and tokenizer (so the architecture is rebuilt from config)
plus `model_int8.pt`, the quantized state dict, and `quantization.json`. Load it with

    from hftk.quantize import load_quantized
    model = load_quantized("OUT")
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, PreTrainedModel

from hftk.errors import HftkError
from hftk.training.output_lock import locks_folder
from hftk.training.outputs import check_output_dir

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


def _model_class(config) -> type[PreTrainedModel]:
    architectures = config.architectures or []
    if not architectures:
        raise HftkError("the model's config.json names no architecture: save it with save_pretrained first")
    name = architectures[0]
    import hftk.models as hftk_models

    cls = getattr(hftk_models, name, None) or getattr(transformers, name, None)
    if cls is None:
        raise HftkError(f"unknown architecture {name} in config.json: quantize hftk models or transformers models")
    return cls


@locks_folder(lambda source, output_dir, **_: output_dir)
def quantize_folder(source: str | Path, output_dir: str | Path, overwrite: bool = False) -> Path:
    """Quantize the model saved in `source` into `output_dir` (written under a temporary name, then moved)."""
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
    cls = _model_class(config)
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
    model = quantize_model(_model_class(config)(config), scheme)
    with warnings.catch_warnings():  # torch's own qtensor unpickler reads storage.device: its deprecation, not ours
        warnings.filterwarnings("ignore", message="TypedStorage is deprecated", category=UserWarning)
        state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
