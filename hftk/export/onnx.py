"""ONNX export of hftk's (and transformers') encoder heads, with int8 dynamic quantization for ONNX Runtime.

Why by hand: optimum's exporter (`optimum-onnx`, the home of `ORTModelFor*` since optimum 2) pins
`transformers<4.58`, so it cannot be installed beside hftk (transformers 5); this module does the
three steps it would: `torch.onnx.export` (the dynamo exporter, dynamic batch and sequence axes),
`onnxruntime.quantization.quantize_dynamic` (int8 weights, int8 activations computed per batch), and
a check of both graphs against PyTorch's logits. The folder follows optimum's layout (`model.onnx`,
`model_quantized.onnx`, `config.json`, tokenizer files) and its input/output names, so it runs with
a plain `onnxruntime.InferenceSession`:

    sess = onnxruntime.InferenceSession("OUT/model_quantized.onnx")
    enc = AutoTokenizer.from_pretrained("OUT")(texts, padding=True, return_tensors="np")
    logits = sess.run(None, {i.name: enc[i.name] for i in sess.get_inputs()})[0]
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from hftk.errors import HftkError
from hftk.export.folders import check_source, load_fp32, publish, require, scratch_folder

FP32_FILE = "model.onnx"
INT8_FILE = "model_quantized.onnx"  # optimum's ORTQuantizer name
# Output names by head, as optimum's OnnxConfigs name them.
HEAD_OUTPUTS = {
    "ForSequenceClassification": ("logits",),
    "ForTokenClassification": ("logits",),
    "ForQuestionAnswering": ("start_logits", "end_logits"),
}
# An exported graph must reproduce PyTorch's fp32 outputs to this (float rounding only).
FP32_TOLERANCE = 1e-3
TOKENIZER_PREFIXES = ("tokenizer", "special_tokens", "vocab", "merges", "added_tokens")


@dataclass
class OnnxExport:
    folder: Path
    fp32_max_diff: float  # of the fp32 graph (written or not: the int8 one is made from it)
    int8_max_diff: float | None  # None: no int8 graph written


def head_outputs(architecture: str) -> tuple[str, ...]:
    for suffix, outputs in HEAD_OUTPUTS.items():
        if architecture.endswith(suffix):
            return outputs
    heads = ", ".join(s.removeprefix("For") for s in HEAD_OUTPUTS)
    raise HftkError(f"ONNX export covers encoder heads ({heads}); {architecture} is not one: fine-tune a head first")


def input_names(config) -> list[str]:
    names = ["input_ids", "attention_mask"]
    if getattr(config, "type_vocab_size", 0) > 1:  # BERT-style segment ids (text pairs)
        names.append("token_type_ids")
    return names


class _Head(torch.nn.Module):
    """The model with named tensor inputs and a tuple of named outputs (what the ONNX graph exposes)."""

    def __init__(self, model: torch.nn.Module, outputs: tuple[str, ...]):
        super().__init__()
        self.model, self.outputs = model, outputs

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return tuple(out[name] for name in self.outputs)


def example_inputs(config, names: list[str], batch: int = 3, length: int = 11, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ids with a padded row (so the graph keeps the masking path) and segment ids in one row."""
    generator = torch.Generator().manual_seed(seed)
    inputs = {"input_ids": torch.randint(3, config.vocab_size, (batch, length), generator=generator),
              "attention_mask": torch.ones(batch, length, dtype=torch.long)}
    inputs["attention_mask"][-1, length // 2 :] = 0
    if "token_type_ids" in names:
        inputs["token_type_ids"] = torch.zeros(batch, length, dtype=torch.long)
        inputs["token_type_ids"][0, length // 2 :] = 1
    return inputs


def export_graph(model: torch.nn.Module, config, outputs: tuple[str, ...], path: Path) -> None:
    names = input_names(config)
    batch, sequence = torch.export.Dim("batch_size"), torch.export.Dim("sequence_length")
    dynamic = {name: {0: batch, 1: sequence} for name in names}
    inputs = example_inputs(config, names)
    torch.onnx.export(
        _Head(model, outputs).eval(), (), str(path), kwargs=inputs, input_names=names, output_names=list(outputs),
        dynamic_shapes=dynamic, dynamo=True, external_data=False, optimize=True, verbose=False,
    )


def quantize_graph(source: Path, target: Path) -> None:
    """int8 weights (a scale per output channel) and int8 activations computed per batch, by ONNX Runtime."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source))
    # The dynamo exporter annotates intermediate shapes that onnx's own shape inference (which
    # quantize_dynamic runs) contradicts on some initializers; it re-infers them all when cleared.
    del graph.graph.value_info[:]
    stripped = target.with_name(target.name + ".fp32-tmp")
    onnx.save(graph, str(stripped))
    try:
        quantize_dynamic(str(stripped), str(target), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        stripped.unlink(missing_ok=True)


def session(path: Path, threads: int | None = None):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def max_diff(path: Path, model: torch.nn.Module, config, outputs: tuple[str, ...]) -> float:
    """Largest |ONNX - PyTorch| over every output, on inputs of another shape than the export's."""
    names = input_names(config)
    inputs = example_inputs(config, names, batch=4, length=23, seed=1)
    with torch.no_grad():
        reference = _Head(model, outputs)(**inputs)
    got = session(path).run(list(outputs), {k: v.numpy() for k, v in inputs.items()})
    return max(float((torch.from_numpy(g) - r).abs().max()) for g, r in zip(got, reference))


def export_onnx(source: str | Path, output_dir: str | Path, fp32: bool = True, int8: bool = True, overwrite: bool = False) -> OnnxExport:
    """Write OUT/model.onnx (fp32) and/or OUT/model_quantized.onnx (int8) with the config and tokenizer; atomic."""
    if not (fp32 or int8):
        raise HftkError("nothing to export: keep the fp32 graph, the int8 graph or both")
    require(("onnx", "onnxscript", "onnxruntime"), "onnx", "ONNX export")
    source, output_dir = Path(source), Path(output_dir)
    check_source(source, output_dir, overwrite)
    architectures = json.loads((source / "config.json").read_text()).get("architectures") or ["(none in config.json)"]
    outputs = head_outputs(architectures[0])  # before loading any weights
    model, config = load_fp32(source)
    tmp = scratch_folder(output_dir)
    try:
        export_graph(model, config, outputs, tmp / FP32_FILE)
        fp32_diff = max_diff(tmp / FP32_FILE, model, config, outputs)
        if fp32_diff > FP32_TOLERANCE:
            raise HftkError(f"the ONNX graph differs from PyTorch by {fp32_diff:.2g} (> {FP32_TOLERANCE}); please report this model")
        int8_diff = None
        if int8:
            quantize_graph(tmp / FP32_FILE, tmp / INT8_FILE)
            int8_diff = max_diff(tmp / INT8_FILE, model, config, outputs)
        if not fp32:
            (tmp / FP32_FILE).unlink()
        config.save_pretrained(tmp)
        copy_tokenizer(source, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish(tmp, output_dir)
    return OnnxExport(output_dir, fp32_diff, int8_diff)


def copy_tokenizer(source: Path, target: Path) -> None:
    for item in source.iterdir():
        if item.is_file() and item.name.startswith(TOKENIZER_PREFIXES):
            shutil.copy2(item, target / item.name)
