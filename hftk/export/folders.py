"""What every `hftk quantize` / `hftk export` writer shares: source checks, the fp32 load, an atomic publish."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, PreTrainedModel

from hftk.errors import HftkError

LEGACY_MARKER = "quantization.json"  # folders of `hftk quantize` before the torchao format (model_int8.pt)


def model_class(config) -> type[PreTrainedModel]:
    """The class named in config.json's `architectures` (hftk's own or transformers')."""
    architectures = config.architectures or []
    if not architectures:
        raise HftkError("the model's config.json names no architecture: save it with save_pretrained first")
    name = architectures[0]
    import hftk.models as hftk_models

    cls = getattr(hftk_models, name, None) or getattr(transformers, name, None)
    if cls is None:
        raise HftkError(f"unknown architecture {name} in config.json: quantize hftk models or transformers models")
    return cls


def require(modules: tuple[str, ...], extra: str, purpose: str) -> None:
    """A one-line error naming the pip command when an optional dependency is missing."""
    import importlib.util

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise HftkError(f"{purpose} needs {', '.join(missing)}: pip install 'hftk[{extra}]'")


def check_source(source: Path, output_dir: Path, overwrite: bool) -> None:
    """A saved fp32 model folder, and an output folder that is free (or may be replaced)."""
    if not (source / "config.json").is_file():
        raise HftkError(f"{source} has no config.json: point hftk at a saved model folder")
    if (source / LEGACY_MARKER).is_file() or "quantization_config" in json.loads((source / "config.json").read_text()):
        raise HftkError(f"{source} is already quantized: pass the fp32 folder it was made from")
    if output_dir.resolve() == source.resolve():
        raise HftkError(f"the output folder is the source folder {source}: choose another -o")
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise HftkError(f"{output_dir} exists and is not empty; pass --overwrite or choose another -o")


def load_fp32(source: Path, **kwargs) -> tuple[PreTrainedModel, object]:
    """The model of `source` in fp32, eval mode, and its config."""
    import hftk  # noqa: F401  (registers hftk's model types)

    config = AutoConfig.from_pretrained(source)
    model = model_class(config).from_pretrained(source, dtype=torch.float32, **kwargs).eval()
    return model, config


def publish(tmp: Path, output_dir: Path) -> None:
    """Replace `output_dir` by the finished `tmp` folder (readers never see a half-written one)."""
    if output_dir.exists():
        shutil.rmtree(output_dir)
    tmp.rename(output_dir)


def scratch_folder(output_dir: Path) -> Path:
    tmp = output_dir.with_name(f".{output_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp
