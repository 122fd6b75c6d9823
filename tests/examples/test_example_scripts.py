"""transformers' own example scripts on hftk run folders: offline, local files, `--trust_remote_code`.

Each script runs in its own process through `run_example.py` (metrics from hftk's shipped copies,
hftk not imported, so the folders load as remote code, as for any transformers user), trains a
tiny model for a few steps and evaluates it. The scripts' reported numbers are then recomputed
here from the saved model and the same data, independently of the script.
"""

from __future__ import annotations

import json
import math
import os
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.commands.test_finetune import DATA, read_rows, write_rows

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
pytestmark = pytest.mark.slow

COMMON = [
    "--do_train", "--do_eval", "--max_steps", "3", "--learning_rate", "1e-3", "--seed", "0",
    "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8", "--report_to", "none",
    "--save_strategy", "no", "--use_cpu", "--dataloader_num_workers", "0", "--trust_remote_code",
]  # fmt: skip


def run_script(script: str, output_dir: Path, *args: str) -> dict:
    """Run `script` as a user would (`python run_x.py ...`); return its all_results.json."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "HF_DATASETS_CACHE": str(output_dir.parent / "datasets-cache"),
        "HF_MODULES_CACHE": str(output_dir.parent / "modules-cache"),
    }
    command = [sys.executable, str(HERE / "run_example.py"), script, "--output_dir", str(output_dir), *COMMON, *args]
    done = subprocess.run(command, cwd=output_dir.parent, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((output_dir / "all_results.json").read_text())


def load_remote(auto_name: str, folder: Path):
    """The trained folder as a transformers user loads it: remote code, the hftk class from the folder."""
    import transformers

    model = getattr(transformers, auto_name).from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__name__.startswith("Hftk"), type(model)
    return model


def assert_trained(folder: Path, start: Path) -> None:
    from safetensors.torch import load_file

    before, after = load_file(start / "model.safetensors"), load_file(folder / "model.safetensors")
    assert any(not torch.equal(after[k], before[k]) for k in before.keys() & after.keys()), "no weight moved"


# ---------------------------------------------------------------------------------------------
# Fixtures: hftk run folders (written by hftk itself) and small slices of ../shared/data
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hftk_bert_folder(tmp_path_factory, bert_tokenizer) -> Path:
    from hftk.models import HftkBertConfig, HftkBertForMaskedLM
    from hftk.training.outputs import write_model_folder

    torch.manual_seed(0)
    config = HftkBertConfig(
        vocab_size=len(bert_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("hftk_bert")
    write_model_folder(HftkBertForMaskedLM(config), bert_tokenizer, folder)
    return folder


@pytest.fixture(scope="module")
def hftk_gpt_folder(tmp_path_factory, gpt2_tokenizer) -> Path:
    from hftk.models import HftkGptConfig, HftkGptForCausalLM
    from hftk.training.outputs import write_model_folder

    torch.manual_seed(0)
    config = HftkGptConfig(
        vocab_size=len(gpt2_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("hftk_gpt")
    write_model_folder(HftkGptForCausalLM(config), gpt2_tokenizer, folder)
    return folder


@pytest.fixture(scope="module")
def bert_tokenizer():
    from tests.commands.test_finetune import minilm_dir
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir())


@pytest.fixture(scope="module")
def gpt2_tokenizer():
    from transformers import GPT2TokenizerFast

    folder = DATA / "tokenizers" / "gpt2"
    return GPT2TokenizerFast(vocab=str(folder / "encoder.json"), merges=str(folder / "vocab.bpe"))


def text_files(tmp_path: Path) -> tuple[str, str]:
    lines = [line for line in (DATA / "pretrain" / "austen.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    train, validation = tmp_path / "train.txt", tmp_path / "validation.txt"
    train.write_text("\n".join(lines[:120]) + "\n", encoding="utf-8")
    validation.write_text("\n".join(lines[1000:1040]) + "\n", encoding="utf-8")
    return str(train), str(validation)


# ---------------------------------------------------------------------------------------------
# The scripts
# ---------------------------------------------------------------------------------------------


def test_run_clm_trains_an_hftk_decoder_and_reports_its_true_eval_loss(hftk_gpt_folder, gpt2_tokenizer, tmp_path):
    train, validation = text_files(tmp_path)
    out = tmp_path / "clm"
    block = 32
    results = run_script(
        "run_clm.py", out, "--model_name_or_path", str(hftk_gpt_folder), "--train_file", train,
        "--validation_file", validation, "--block_size", str(block),
    )  # fmt: skip
    assert results["perplexity"] == pytest.approx(math.exp(results["eval_loss"]))
    assert_trained(out, hftk_gpt_folder)
    # run_clm's evaluation, redone: the validation text tokenized, concatenated, cut into blocks.
    model = load_remote("AutoModelForCausalLM", out)
    lines = Path(validation).read_text(encoding="utf-8").splitlines(keepends=True)  # --keep_linebreaks is the default
    ids = [i for line in lines for i in gpt2_tokenizer(line)["input_ids"]]
    blocks = torch.tensor(ids[: len(ids) // block * block]).view(-1, block)
    assert results["eval_samples"] == len(blocks)
    with torch.no_grad():
        logits = model(blocks).logits
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), blocks[:, 1:].reshape(-1))
    assert results["eval_loss"] == pytest.approx(loss.item(), rel=1e-4)


def test_run_mlm_trains_and_evaluates_an_hftk_encoder(hftk_bert_folder, tmp_path):
    train, validation = text_files(tmp_path)
    out = tmp_path / "mlm"
    results = run_script(
        "run_mlm.py", out, "--model_name_or_path", str(hftk_bert_folder), "--train_file", train,
        "--validation_file", validation, "--max_seq_length", "64",
    )  # fmt: skip
    assert results["perplexity"] == pytest.approx(math.exp(results["eval_loss"]))
    assert 0.0 <= results["eval_accuracy"] <= 1.0
    assert_trained(out, hftk_bert_folder)
    load_remote("AutoModelForMaskedLM", out)


def test_run_glue_classifies_with_an_hftk_encoder(hftk_bert_folder, bert_tokenizer, tmp_path):
    rows = read_rows(DATA / "classification" / "fine_foods" / "train.jsonl", 90)
    train = write_rows(tmp_path / "train.json", rows[:60])
    validation = write_rows(tmp_path / "validation.json", rows[60:])
    out = tmp_path / "glue"
    results = run_script(
        "run_glue.py", out, "--model_name_or_path", str(hftk_bert_folder), "--train_file", train,
        "--validation_file", validation, "--max_seq_length", "64",
    )  # fmt: skip
    assert_trained(out, hftk_bert_folder)
    # The accuracy, recomputed from the saved classifier. run_glue numbers string labels in sorted
    # order (under transformers 5 its config keeps LABEL_0/LABEL_1 names, for any model).
    model = load_remote("AutoModelForSequenceClassification", out)
    label2id = {label: i for i, label in enumerate(sorted({row["label"] for row in rows[:60]}))}
    assert model.config.num_labels == len(label2id) == 2
    batch = bert_tokenizer([row["text"] for row in rows[60:]], truncation=True, max_length=64, padding=True, return_tensors="pt")
    with torch.no_grad():
        predicted = model(**batch).logits.argmax(-1).tolist()
    accuracy = sum(p == label2id[row["label"]] for p, row in zip(predicted, rows[60:])) / len(predicted)
    assert results["eval_accuracy"] == pytest.approx(accuracy)


def test_run_ner_tags_with_an_hftk_encoder(hftk_bert_folder, tmp_path):
    rows = read_rows(DATA / "ner" / "wnut16" / "train.jsonl", 60)
    train = write_rows(tmp_path / "train.json", rows[:40])
    validation = write_rows(tmp_path / "validation.json", rows[40:])
    out = tmp_path / "ner"
    results = run_script(
        "run_ner.py", out, "--model_name_or_path", str(hftk_bert_folder), "--train_file", train,
        "--validation_file", validation, "--max_seq_length", "64", "--return_entity_level_metrics",
    )  # fmt: skip
    assert_trained(out, hftk_bert_folder)
    model = load_remote("AutoModelForTokenClassification", out)
    tags = {tag for row in rows[:40] + rows[40:] for tag in row["ner_tags"]}
    assert set(model.config.label2id) == tags
    assert 0.0 <= results["eval_overall_accuracy"] <= 1.0 and 0.0 <= results["eval_overall_f1"] <= 1.0
    assert results["eval_samples"] == 20


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation (lower case, no punctuation, articles or extra spaces)."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def test_run_qa_answers_with_an_hftk_encoder(hftk_bert_folder, tmp_path):
    rows = read_rows(DATA / "qa" / "brown_cloze" / "train.jsonl", 48)
    (tmp_path / "train.json").write_text(json.dumps({"data": rows[:32]}), encoding="utf-8")
    (tmp_path / "validation.json").write_text(json.dumps({"data": rows[32:]}), encoding="utf-8")
    out = tmp_path / "qa"
    results = run_script(
        "run_qa.py", out, "--model_name_or_path", str(hftk_bert_folder), "--train_file", str(tmp_path / "train.json"),
        "--validation_file", str(tmp_path / "validation.json"), "--max_seq_length", "128", "--doc_stride", "32",
    )  # fmt: skip
    assert_trained(out, hftk_bert_folder)
    load_remote("AutoModelForQuestionAnswering", out)
    # Exact match, recomputed from the script's own predictions file with SQuAD's normalisation.
    predictions = json.loads((out / "eval_predictions.json").read_text())
    assert set(predictions) == {row["id"] for row in rows[32:]}
    hits = [
        any(normalize_answer(predictions[row["id"]]) == normalize_answer(a) for a in row["answers"]["text"])
        for row in rows[32:]
    ]
    assert results["eval_exact_match"] == pytest.approx(100.0 * sum(hits) / len(hits))
    assert 0.0 <= results["eval_f1"] <= 100.0


def test_metric_redirect_serves_hftk_copies_and_leaves_other_names_alone(monkeypatch):
    """The only change the wrapper makes: shipped names load from hftk's folder, others reach evaluate."""
    import evaluate

    sys.path.insert(0, str(HERE))
    try:
        import run_example
    finally:
        sys.path.remove(str(HERE))
    seen = []
    monkeypatch.setattr(run_example, "_hub_load", lambda path, config_name=None, **kw: seen.append((path, config_name)))
    run_example.offline_load("glue", "mrpc")
    run_example.offline_load("mse")
    assert seen == [(str(REPO / "hftk" / "metrics" / "glue"), "mrpc"), ("mse", None)]
    assert evaluate.load is not run_example.offline_load  # importing the wrapper patches nothing
