"""Every command in README.md's ```bash blocks runs as written (with tiny budgets added by --set).

A quickstart that fails as written is the first thing a new user meets. Commands run in order in
one scratch folder, as a user pastes them; fixtures stand in for the user's own files (my.yaml,
corpus/, train.jsonl, ...). Only commands that need the network, the Hub or several processes
are skipped, each with its reason, and the test fails if fewer than MIN_RUN commands ran.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HFTK_SHARED_DIR", ROOT / ".." / "shared")).resolve()
DATA = SHARED / "data"
MIN_RUN = 14  # the README has 16 runnable commands today; fewer means the parser lost some

TINY_PRETRAIN = [
    "model.config.hidden_size=32", "model.config.num_hidden_layers=1", "model.config.num_attention_heads=2",
    "model.config.intermediate_size=64", "tokenizer.vocab_size=400", "training.max_steps=2",
    "training.max_time_minutes=null", "training.eval_steps=1", "training.max_eval_batches=1", "training.save_steps=1",
    "training.per_device_train_batch_size=4", "training.per_device_eval_batch_size=4", "training.report_to=[]",
    "training.num_threads=1",
]
TINY_FINETUNE = [
    "training.max_steps=2", "training.eval_steps=1", "training.per_device_train_batch_size=4",
    "training.per_device_eval_batch_size=8", "training.report_to=[]", "training.num_threads=1",
    "data.max_train_samples=16", "data.max_eval_samples=8", "generation.max_new_tokens=4",
]
TINY_PIPELINE = [
    *(f"pretrain.{item}" for item in TINY_PRETRAIN if not item.startswith(("model.", "tokenizer."))),
    # pipeline-tiny's learning curve needs its stage's whole (256-review) training set: no max_train_samples
    *(f"finetune.*.{item}" for item in TINY_FINETUNE if not item.startswith(("generation.", "data.max_train_samples"))),
]
# Which task's files train.jsonl / dev.jsonl / test.jsonl hold when a command names them.
TASK_DATA = {
    "classification": "classification/fine_foods",
    "qa": "qa/brown_cloze",
    "ner": "ner/wnut16",
    "generation": "generation/bbc_headlines",
    "translation": "translation/bible_en_es",
    "summarization": "generation/bbc_headlines",
}


def readme_commands() -> list[str]:
    """Each shell command of the ```bash blocks: continuations joined, `a && b` split, comments dropped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            for is_sep, group in itertools.groupby(words, key=lambda w: w == "&&"):
                if not is_sep:
                    commands.append(shlex.join(group))
    return commands


def skip_reason(words: list[str]) -> str | None:
    """Why a command cannot run here (None: it must run)."""
    program = next(w for w in words if "=" not in w)  # past VAR=value prefixes
    if program == "pip":
        return "installs packages (network)"
    if words[:3] == ["python", "-m", "pytest"]:
        return "the test suite itself"
    if program in ("hf", "huggingface-cli"):
        return "Hub login (network)"
    if program in ("accelerate", "torchrun"):
        return "several processes / interactive set-up (tests/commands/test_pretrain.py runs two CPU processes)"
    if program != "hftk":
        return None
    if words[1:2] == ["push"] or "--push-to-hub" in words:
        return "uploads to the Hub (network; tests/test_hub.py drives a local fake Hub)"
    if words[1:3] == ["finetune", "glue"] and not any("train_file" in w for w in words):
        return "GLUE data from the Hub (network; tests/commands/test_finetune.py runs GLUE on local files)"
    if words[1:3] == ["run", "pipeline-shared"]:
        return "pretrains on the 10 MB shared corpus for minutes; `hftk run pipeline-tiny` runs the same stages"
    return None


def write_rows(path: Path, source: Path, n: int, start: int = 0) -> None:
    with open(source, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in itertools.islice(handle, start, start + n)]
    if "document" in rows[0]:
        rows = [{**row, "document": row["document"][:300]} for row in rows]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def task_of(words: list[str]) -> str | None:
    return words[2] if words[1:2] in (["finetune"], ["evaluate"], ["distill"]) and len(words) > 2 else None


def prepare(words: list[str], cwd: Path) -> list[str]:
    """Put the files the command names in place; return its arguments with tiny budgets added."""
    task = task_of(words)
    if task in TASK_DATA:  # this task's layout under the names the README uses
        folder = DATA / TASK_DATA[task]
        write_rows(cwd / "train.jsonl", folder / "train.jsonl", 32)
        for name in ("test.jsonl", "dev.jsonl"):
            write_rows(cwd / name, folder / "test.jsonl", 16)
    if "..." in words:  # "--set lora.r=8 ...": the rest of the command as in the line above
        index = words.index("...")
        words = [*words[:index], "--set", "data.train_file=train.jsonl", "--set", "data.validation_file=test.jsonl", *words[index + 1 :]]
    if words[1:2] == ["pretrain"] and "--resume" in words:  # resume needs an interrupted run: drop the end marker
        out = Path(cwd, words[words.index("-o") + 1])
        (out / "metrics.json").unlink()
    if words[1:2] in (["pretrain"], ["finetune"], ["evaluate"], ["distill"]):
        sets = TINY_PRETRAIN if words[1] == "pretrain" else TINY_FINETUNE
        if words[1] == "pretrain" and not any(w.startswith("data.train_files=") for w in words):
            # Tokenizer training and packing of the whole Austen corpus cost more than the tiny budget
            # itself; the vendored corpus is read in tests/data/test_corpus.py.
            sets = [*sets, f"data.train_files={cwd / 'corpus'}"]
        words = [*words, *(arg for item in sets for arg in ("--set", item))]
    if words[1:2] == ["run"]:  # pipelines pretrain on the small corpus/ too
        sets = [*TINY_PIPELINE, f"pretrain.data.train_files={cwd / 'corpus'}", "pretrain.tokenizer.vocab_size=400"]
        words = [*words, *(arg for item in sets for arg in ("--set", item))]
    return words


def make_fixtures(cwd: Path) -> None:
    """The user's own files the README's commands name."""
    shipped = ROOT / "hftk" / "recipes"
    shutil.copy(shipped / "pretrain-default.yaml", cwd / "my.yaml")
    (cwd / "corpus").mkdir()
    lines = (DATA / "pretrain" / "austen.txt").read_text(encoding="utf-8").splitlines()
    (cwd / "corpus" / "a.txt").write_text("\n".join(lines[:300]) + "\n", encoding="utf-8")
    (cwd / "corpus" / "b.txt").write_text("\n".join(lines[300:600]) + "\n", encoding="utf-8")
    shutil.copy(shipped / "pipeline-tiny.yaml", cwd / "my-pipeline.yaml")  # a user's copy: its data is generated
    make_bert_checkpoint(cwd / "path" / "to" / "bert-checkpoint")
    make_teacher(cwd, cwd / "runs" / "ff-teacher")


def make_teacher(cwd: Path, folder: Path) -> None:
    """The user's fine-tuned 6-layer classifier that the README's `hftk distill` line distils."""
    from transformers import BertConfig, BertForMaskedLM

    source = cwd / "teacher-base"
    shutil.copytree(cwd / "path" / "to" / "bert-checkpoint", source)
    config = BertConfig.from_pretrained(source)
    config.num_hidden_layers = 6
    BertForMaskedLM(config).save_pretrained(source)
    data = DATA / TASK_DATA["classification"]
    write_rows(cwd / "teacher-train.jsonl", data / "train.jsonl", 32)
    sets = [*TINY_FINETUNE, f"data.train_file={cwd / 'teacher-train.jsonl'}", f"data.validation_file={cwd / 'teacher-train.jsonl'}"]
    subprocess.run(
        [sys.executable, "-m", "hftk", "finetune", "classification", "--model", str(source), "-o", str(folder),
         *(arg for item in sets for arg in ("--set", item))],
        cwd=cwd, env=test_env(), check=True, capture_output=True, timeout=1200,
    )


def test_env() -> dict[str, str]:
    return {
        **os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


def make_bert_checkpoint(folder: Path) -> None:
    """A tiny standard BertForMaskedLM with its WordPiece tokenizer, as `hftk convert` expects."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    folder.mkdir(parents=True)
    words = sorted({w.lower() for w in re.findall(r"[A-Za-z]+", (DATA / "pretrain" / "austen.txt").read_text()[:20000])})
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # ~16 runs, a few minutes on an idle 2-core machine; far longer on a busy one
def test_every_readme_command_runs_as_written(tmp_path):
    make_fixtures(tmp_path)
    env = test_env()
    ran, skipped, seen = [], [], set()
    for command in readme_commands():
        words = shlex.split(command)
        reason = skip_reason(words)
        if reason is None and command in seen:
            reason = "the same command ran above"
        if reason is not None:
            skipped.append((command, reason))
            continue
        assert words[0] == "hftk", f"README command not covered by this test: {command}"
        seen.add(command)
        args = prepare(words, tmp_path)
        result = subprocess.run(
            [sys.executable, "-m", "hftk", *args[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200
        )
        assert result.returncode == 0, f"README command failed: {command}\n{result.stderr[-3000:]}"
        assert "Traceback" not in result.stderr, command
        ran.append(command)
    assert len(ran) >= MIN_RUN, (ran, skipped)
    # The runs the README promises exist where it says.
    for folder in ("runs/pretrain-default", "runs/pretrain-gpt", "runs/mine", "runs/finetune-qa", "runs/bert-as-hftk", "runs/ff-student"):
        assert (tmp_path / folder / "config.json").is_file(), folder
    assert (tmp_path / "runs" / "pipeline-tiny" / "report.md").is_file()
