"""`hftk export onnx`: the graphs reproduce PyTorch's outputs (fp32 exactly, int8 closely) and load in ONNX Runtime."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import torch

from hftk.errors import HftkError
from hftk.export.onnx import FP32_FILE, INT8_FILE, export_onnx
from tests.export.tiny_heads import TEXTS, save_head, tokenizer

# int8 outputs within 0.05 + 5 % of the largest fp32 output (as for `hftk quantize`'s other format).
ABS, REL = 0.05, 0.05
OUTPUTS = {"SequenceClassification": ["logits"], "TokenClassification": ["logits"], "QuestionAnswering": ["start_logits", "end_logits"]}


@pytest.fixture(scope="module")
def tok():
    return tokenizer()


def run_onnx(path, tok, texts):
    """The documented recipe: tokenizer to numpy, the graph's own input names."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    encoded = tok(texts, padding=True, return_tensors="np")
    return session.run(None, {i.name: encoded[i.name] for i in session.get_inputs()}), [o.name for o in session.get_outputs()]


@pytest.mark.parametrize("kind,head", [("hftk_bert", "SequenceClassification"), ("hftk_bert", "TokenClassification"),
                                       ("hftk_bert", "QuestionAnswering"), ("bert", "SequenceClassification")])
def test_export_matches_pytorch(kind, head, tok, tmp_path):
    import transformers

    source = save_head(kind, head, tmp_path / "fp32", tok)
    result = export_onnx(source, tmp_path / "onnx")
    assert result.fp32_max_diff < 1e-4 and result.int8_max_diff is not None
    assert {FP32_FILE, INT8_FILE, "config.json", "tokenizer.json"} <= set(os.listdir(tmp_path / "onnx"))
    # An independent reference: the fp32 model through transformers' Auto class, on real text with padding.
    reference = getattr(transformers, f"AutoModelFor{head}").from_pretrained(source).eval()
    with torch.no_grad():
        expected = reference(**tok(TEXTS, padding=True, return_tensors="pt"))
    mask = tok(TEXTS, padding=True, return_tensors="np")["attention_mask"].astype(bool)
    for name, tolerance in ((FP32_FILE, lambda ref: 1e-4), (INT8_FILE, lambda ref: ABS + REL * np.abs(ref).max())):
        got, names = run_onnx(tmp_path / "onnx" / name, tok, TEXTS)
        assert names == OUTPUTS[head]
        for value, output in zip(got, names):
            ref = expected[output].numpy()
            if head != "SequenceClassification":  # per-token outputs: padded positions mean nothing
                value, ref = value[mask], ref[mask]
            assert value.shape == ref.shape
            assert np.abs(value - ref).max() <= tolerance(ref), (name, output)
            if name == INT8_FILE:
                assert not np.array_equal(value, ref)  # really quantized


def test_int8_only_and_errors(tok, tmp_path):
    source = save_head("hftk_bert", "SequenceClassification", tmp_path / "fp32", tok)
    result = export_onnx(source, tmp_path / "int8", fp32=False)
    assert not (tmp_path / "int8" / FP32_FILE).exists() and (tmp_path / "int8" / INT8_FILE).is_file()
    assert result.int8_max_diff is not None
    with pytest.raises(HftkError, match="no config.json"):
        export_onnx(tmp_path / "nothing", tmp_path / "out")
    with pytest.raises(HftkError, match="--overwrite"):
        export_onnx(source, tmp_path / "int8")
    from hftk.models import HftkBertConfig, HftkBertForMaskedLM

    HftkBertForMaskedLM(HftkBertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32)).save_pretrained(tmp_path / "mlm")
    with pytest.raises(HftkError, match="not one: fine-tune a head first"):
        export_onnx(tmp_path / "mlm", tmp_path / "mlm-onnx")
    assert not (tmp_path / "mlm-onnx").exists() and not (tmp_path / ".mlm-onnx.tmp").exists()
