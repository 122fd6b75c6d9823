"""`AutoTokenizer.from_pretrained(run_folder)`: a plain fast tokenizer, loaded silently, with and without hftk.

transformers 5 resolves the folder's model config before it reads `tokenizer_config.json`, so
the tokenizer load is where a custom `model_type` shows: where hftk has registered its types
(`import hftk`) nothing asks for remote code; in a Python without hftk the model's flag,
`trust_remote_code=True`, is all it takes (transformers then runs only the config code), and no
"model of type `hftk_bert` to instantiate a model of type ``" warning appears.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
from transformers import AutoTokenizer

from hftk.models import HftkBertForMaskedLM, HftkGptForCausalLM
from hftk.training.outputs import write_model_folder

from . import clean_python
from .tiny import build, tiny_bert_config, tiny_gpt_config

TEXTS = ["she was very happy", "It is a truth universally acknowledged"]


@pytest.fixture
def run_folders(tmp_path, bert_tokenizer, gpt2_tokenizer):
    """An encoder and a decoder folder as hftk writes them (model, code files, tokenizer)."""
    folders = {}
    for name, model_class, config, tokenizer in (
        ("bert", HftkBertForMaskedLM, tiny_bert_config(vocab_size=len(bert_tokenizer)), bert_tokenizer),
        ("gpt", HftkGptForCausalLM, tiny_gpt_config(vocab_size=len(gpt2_tokenizer)), gpt2_tokenizer),
    ):
        write_model_folder(build(model_class, config), tokenizer, tmp_path / name)
        folders[name] = (tmp_path / name, tokenizer)
    return folders


def test_tokenizer_loads_silently_where_hftk_is_imported(run_folders, caplog):
    from transformers.utils import logging as hf_logging

    hf_logging.enable_propagation()  # transformers' warnings reach caplog
    try:
        for folder, original in run_folders.values():
            with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
                warnings.simplefilter("error")
                loaded = AutoTokenizer.from_pretrained(folder)
            assert [loaded(t)["input_ids"] for t in TEXTS] == [original(t)["input_ids"] for t in TEXTS]
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        hf_logging.disable_propagation()


CLEAN_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.extend(sys.argv[1].split("|"))  # site-packages only: hftk cannot be imported
    try:
        import hftk
    except ImportError:
        pass
    else:
        raise SystemExit("hftk is importable in the clean interpreter")
    from transformers import AutoTokenizer
    texts, out = json.loads(sys.argv[3]), {}
    for name, folder in json.loads(sys.argv[2]).items():
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        out[name] = [type(tokenizer).__module__.split(".")[0], [tokenizer(t)["input_ids"] for t in texts]]
    print(json.dumps(out))
    """
)


def test_tokenizer_loads_silently_without_hftk_with_the_models_flag(run_folders, tmp_path):
    site_packages = clean_python.site_packages()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "HF_HUB_OFFLINE": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "TOKENIZERS_PARALLELISM": "false",
    }
    folders = {name: str(folder) for name, (folder, _) in run_folders.items()}
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", CLEAN_SCRIPT, site_packages, json.dumps(folders), json.dumps(TEXTS)],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.strip() == "", done.stderr[-3000:]  # no prompt, no "model of type" warning
    results = json.loads(done.stdout)
    for name, (_, original) in run_folders.items():
        module, ids = results[name]
        assert module == "transformers"  # transformers' own fast tokenizer class, no remote tokenizer code
        assert ids == [original(t)["input_ids"] for t in TEXTS]
