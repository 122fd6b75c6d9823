"""Saving and loading: exact round trips, every Auto head from one folder, remote code without hftk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors import safe_open
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from hftk.models import (
    AUTO_CLASSES,
    HftkBertConfig,
    HftkBertForMaskedLM,
    HftkBertForPreTraining,
    HftkBertForQuestionAnswering,
    HftkBertForSequenceClassification,
    HftkBertForTokenClassification,
    HftkBertModel,
    HftkGptConfig,
    HftkGptForCausalLM,
    HftkGptForSequenceClassification,
    HftkGptModel,
    HftkSeq2SeqConfig,
    HftkSeq2SeqForConditionalGeneration,
    HftkSeq2SeqModel,
)

from . import clean_python
from .tiny import build, tiny_bert_config, tiny_gpt_config, tiny_seq2seq_config

IDS = torch.tensor([[5, 17, 33, 8, 41, 9], [22, 7, 61, 4, 90, 3]])
# modeling_hftk.py and the siblings it imports relatively: save_pretrained copies them all.
CODE_FILES = {"configuration_hftk.py", "modeling_hftk.py", "attention_hftk.py", "cache_compat_hftk.py", "loss_hftk.py"}


def outputs(model, ids: torch.Tensor = IDS) -> torch.Tensor:
    with torch.no_grad():
        out = model(ids)
    if hasattr(out, "logits"):
        return out.logits
    if hasattr(out, "start_logits"):
        return torch.stack([out.start_logits, out.end_logits])
    return out.last_hidden_state


def make(model_class):
    tiny = {HftkBertConfig: tiny_bert_config, HftkGptConfig: tiny_gpt_config, HftkSeq2SeqConfig: tiny_seq2seq_config}
    return build(model_class, tiny[model_class.config_class](num_labels=3))


HEADS = [cls for heads in AUTO_CLASSES.values() for cls in heads.values()]


@pytest.mark.parametrize("model_class", HEADS, ids=lambda c: c.__name__)
def test_save_load_round_trip_is_exact(model_class, tmp_path):
    model = make(model_class)
    model.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt")) for f in files)
    assert CODE_FILES <= files
    loaded = type(model).from_pretrained(tmp_path).eval()
    original, reloaded = model.state_dict(), loaded.state_dict()
    assert original.keys() == reloaded.keys()
    for name in original:
        assert torch.equal(original[name], reloaded[name]), name
    assert torch.equal(outputs(loaded), outputs(model))


@pytest.mark.parametrize("position", ["sinusoidal", "rope"])
def test_computed_position_buffers_survive_loading(position, tmp_path):
    """Sinusoidal tables and RoPE frequencies are not saved: loading must recompute them, not leave garbage."""
    model = build(HftkGptForCausalLM, tiny_gpt_config(position_embedding_type=position))
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        assert not any("sinusoidal" in k or "inv_freq" in k for k in f.keys())
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    buffers = dict(model.named_buffers())
    assert buffers and buffers.keys() == dict(loaded.named_buffers()).keys()
    for name, buffer in loaded.named_buffers():
        assert torch.equal(buffer, buffers[name]), name
    assert torch.equal(outputs(loaded), outputs(model))


FAMILY_FOLDERS = {
    HftkBertForMaskedLM: {
        AutoModel: HftkBertModel,
        AutoModelForMaskedLM: HftkBertForMaskedLM,
        AutoModelForSequenceClassification: HftkBertForSequenceClassification,
        AutoModelForTokenClassification: HftkBertForTokenClassification,
        AutoModelForQuestionAnswering: HftkBertForQuestionAnswering,
        AutoModelForPreTraining: HftkBertForPreTraining,
    },
    HftkGptForCausalLM: {
        AutoModel: HftkGptModel,
        AutoModelForCausalLM: HftkGptForCausalLM,
        AutoModelForSequenceClassification: HftkGptForSequenceClassification,
    },
    HftkSeq2SeqForConditionalGeneration: {AutoModel: HftkSeq2SeqModel, AutoModelForSeq2SeqLM: HftkSeq2SeqForConditionalGeneration},
}
FAMILY_FOLDERS[HftkBertForPreTraining] = FAMILY_FOLDERS[HftkBertForMaskedLM]  # ELECTRA's saved discriminator


@pytest.mark.parametrize("source_class", FAMILY_FOLDERS, ids=lambda c: c.__name__)
def test_one_saved_folder_loads_with_every_auto_head_of_its_family(source_class, tmp_path):
    model = make(source_class)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    heads = FAMILY_FOLDERS[source_class]
    module = type(model).__module__.rsplit(".", 1)[-1]
    assert config["auto_map"] == {
        "AutoConfig": f"configuration_hftk.{type(model.config).__name__}",
        **{auto.__name__: f"{module}.{cls.__name__}" for auto, cls in heads.items()},
    }
    assert AutoConfig.from_pretrained(tmp_path).model_type == model.config.model_type
    body = {k.removeprefix("model."): v for k, v in model.state_dict().items() if k.startswith("model.")}
    for auto_class, expected in heads.items():
        loaded = auto_class.from_pretrained(tmp_path, trust_remote_code=True)
        assert type(loaded) is expected
        shared = {k.removeprefix("model."): v for k, v in loaded.state_dict().items()}
        for name, tensor in body.items():
            if name in shared:
                assert torch.equal(shared[name], tensor), (auto_class.__name__, name)
        assert sum(name in shared for name in body) >= len(body) - 2  # all but a pooler the LM had no use for


@pytest.mark.parametrize(
    "model_class", [HftkBertForMaskedLM, HftkGptForCausalLM, HftkSeq2SeqForConditionalGeneration], ids=lambda c: c.__name__
)
def test_tied_embeddings_share_storage_after_load_and_are_stored_once(model_class, tmp_path):
    model = make(model_class)
    model.save_pretrained(tmp_path)
    loaded = model_class.from_pretrained(tmp_path)
    output, embedding = loaded.get_output_embeddings().weight, loaded.get_input_embeddings().weight
    assert output.data_ptr() == embedding.data_ptr()
    with torch.no_grad():
        embedding[0, 0] += 1.0
    assert output[0, 0] == embedding[0, 0]
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        assert sum(f.get_slice(k).get_shape() == [97, 32] for k in f.keys()) == 1


REMOTE_SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    sys.path.extend(sys.argv[1].split("|"))  # site-packages only: no cwd, no .pth files, no editable hftk
    try:
        import hftk
    except ImportError:
        pass
    else:
        raise SystemExit("hftk is importable in the clean interpreter: " + hftk.__file__)
    import torch
    import transformers

    jobs, ids = json.loads(sys.argv[2]), torch.load(sys.argv[3])
    results = {}
    for name, (folder, resave, auto_name) in jobs.items():
        auto_class = getattr(transformers, auto_name)
        model = auto_class.from_pretrained(folder, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
        model.save_pretrained(resave)
        again = auto_class.from_pretrained(resave, trust_remote_code=True).eval()
        body = transformers.AutoModel.from_pretrained(resave, trust_remote_code=True)
        with torch.no_grad():
            results[name] = {"first": model(ids).logits, "resaved": again(ids).logits, "body": type(body).__name__}
    torch.save(results, sys.argv[4])
    """
)


def test_remote_code_loads_without_hftk_and_survives_a_second_save(tmp_path):
    """`trust_remote_code=True` in a Python where hftk cannot be imported, then save and load once more."""
    models = {
        "bert": make(HftkBertForMaskedLM),
        "gpt": make(HftkGptForCausalLM),
        "seq2seq": make(HftkSeq2SeqForConditionalGeneration),
        # ELECTRA's saved discriminator, and a generator narrower than its (shared) embeddings.
        "electra": make(HftkBertForPreTraining),
        "generator": build(HftkBertForMaskedLM, tiny_bert_config(hidden_size=16, num_attention_heads=2, embedding_size=32)),
    }
    autos = {"bert": "AutoModelForMaskedLM", "gpt": "AutoModelForCausalLM", "seq2seq": "AutoModelForSeq2SeqLM",
             "electra": "AutoModelForPreTraining", "generator": "AutoModelForMaskedLM"}
    jobs = {}
    for name, model in models.items():
        model.save_pretrained(tmp_path / name)
        jobs[name] = (str(tmp_path / name), str(tmp_path / f"{name}-resaved"), autos[name])
    # The discriminator's folder under the heads fine-tuning uses (their new layers are random: compared after a resave).
    for auto_name in ("AutoModelForSequenceClassification", "AutoModelForTokenClassification"):
        jobs[auto_name] = (str(tmp_path / "electra"), str(tmp_path / f"electra-{auto_name}"), auto_name)
    torch.save(IDS, tmp_path / "ids.pt")
    (tmp_path / "remote.py").write_text(REMOTE_SCRIPT)
    site_packages = clean_python.site_packages()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "HF_HUB_OFFLINE": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "TOKENIZERS_PARALLELISM": "false",
    }
    # -I: no cwd, no user site, no PYTHON* variables; -S: no site-packages .pth files (the editable finder).
    command = [sys.executable, "-I", "-S", str(tmp_path / "remote.py"), site_packages, json.dumps(jobs)]
    done = subprocess.run(
        [*command, str(tmp_path / "ids.pt"), str(tmp_path / "out.pt")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = torch.load(tmp_path / "out.pt")
    for name, model in models.items():
        expected = outputs(model)
        assert torch.equal(results[name]["first"], expected), name
        assert torch.equal(results[name]["resaved"], expected), name
        assert results[name]["body"] == type(model.model).__name__
        first_map = json.loads((tmp_path / name / "config.json").read_text())["auto_map"]
        second_map = json.loads((tmp_path / f"{name}-resaved" / "config.json").read_text())["auto_map"]
        assert second_map == first_map and len(second_map) >= 3
        assert CODE_FILES <= set(os.listdir(tmp_path / f"{name}-resaved"))
    for auto_name, shape in (("AutoModelForSequenceClassification", (2, 3)), ("AutoModelForTokenClassification", (2, 6, 3))):
        result = results[auto_name]
        assert result["first"].shape == shape and torch.equal(result["resaved"], result["first"]), auto_name
        assert result["body"] == "HftkBertModel"


def test_clean_interpreter_really_cannot_import_hftk(tmp_path):
    """The isolation the remote-code test relies on: the same command line fails on `import hftk`."""
    site_packages = clean_python.site_packages()
    code = "import sys; sys.path.extend(sys.argv[1].split('|')); import safetensors; import hftk"
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, site_packages], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "ModuleNotFoundError: No module named 'hftk'" in done.stderr
