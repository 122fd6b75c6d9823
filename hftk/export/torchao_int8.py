"""int8 through transformers' torchao integration: a folder `AutoModelFor*.from_pretrained` loads.

Every `nn.Linear` weight becomes a torchao `Int8Tensor` (a scale per output row) and activations
are quantized per token at run time (`Int8DynamicActivationInt8WeightConfig`, the scheme of
`torch.ao.quantization.quantize_dynamic`, which PyTorch deprecated in favour of torchao).
`save_pretrained` writes them to model.safetensors (torchao's flattened tensor-subclass format)
and the scheme to config.json's `quantization_config`, so

    AutoModelForSequenceClassification.from_pretrained("OUT")   # torchao installed

rebuilds the int8 model, hftk installed or not (`trust_remote_code=True` for hftk's own
architectures, whose code files are in the folder). Embeddings, norms and a tied LM head stay
fp32 (transformers' default `modules_to_not_convert`), so a tied head keeps its tie.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hftk.export.folders import check_source, load_fp32, publish, scratch_folder

TOKENIZER_PREFIXES = ("tokenizer", "special_tokens", "vocab", "merges", "added_tokens", "generation_config", "preprocessor")


def torchao_config():
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig
    from transformers import TorchAoConfig

    return TorchAoConfig(Int8DynamicActivationInt8WeightConfig())


def quantize_torchao(source: str | Path, output_dir: str | Path, overwrite: bool = False) -> Path:
    """Write the int8 copy of the model in `source` to `output_dir` (under a temporary name, then moved)."""
    source, output_dir = Path(source), Path(output_dir)
    check_source(source, output_dir, overwrite)
    model, _ = load_fp32(source, quantization_config=torchao_config())
    tmp = scratch_folder(output_dir)
    try:
        model.save_pretrained(tmp)
        for item in source.iterdir():  # tokenizer and generation settings; save_pretrained wrote config, weights, code
            if item.is_file() and item.name.startswith(TOKENIZER_PREFIXES) and not (tmp / item.name).exists():
                shutil.copy2(item, tmp / item.name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish(tmp, output_dir)
    return output_dir
