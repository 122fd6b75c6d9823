"""`hftk push` takes both int8 formats (torchao safetensors, ONNX) and names the fix for the old pickled one."""

from __future__ import annotations

import pytest
from huggingface_hub import constants

from hftk.errors import HftkError
from hftk.hub import push_folder, select_upload_files


def folder_with(tmp_path, *names):
    folder = tmp_path / "int8"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", *names):
        (folder / name).write_bytes(b"{}")
    return folder


@pytest.mark.parametrize("weights", [["model.safetensors"], ["model_quantized.onnx"], ["model.onnx", "model_quantized.onnx"]])
def test_int8_folders_pass_the_folder_check_and_upload_their_weights(weights, tmp_path, monkeypatch):
    folder = folder_with(tmp_path, *weights)
    assert select_upload_files(folder) == sorted(["config.json", "tokenizer.json", *weights])
    monkeypatch.setattr(constants, "is_offline_mode", lambda: True)  # the next check after the folder's: no request made
    with pytest.raises(HftkError, match="HF_HUB_OFFLINE is set"):
        push_folder(folder, "alice/tiny-int8")


def test_old_int8_pickle_names_the_command_that_rewrites_it(tmp_path):
    folder = folder_with(tmp_path, "model_int8.pt", "quantization.json")
    with pytest.raises(HftkError, match=r"rewrite it with `hftk quantize FP32_FOLDER -o OUT`"):
        push_folder(folder, "alice/tiny-int8")
    assert "model_int8.pt" not in select_upload_files(folder)
