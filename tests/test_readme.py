"""Every command block in README.md and the docs/ guides runs as written (with tiny budgets added by --set).

A quickstart or a guide that fails as written is the first thing a new user meets. The pages are
read in the order a newcomer follows them (README.md, then the site's navigation in mkdocs.yml);
their ```bash commands and ```python snippets run in that order in one scratch folder, as a user
pastes them, so a guide may use what an earlier page made (runs/pretrain-default). Fixtures stand in
for the user's own files (my.yaml, corpus/, train.jsonl, ...). Only commands that need the network,
the Hub or several processes are skipped, each with its reason, and the test fails if fewer than
MIN_RUN commands ran.
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
MIN_RUN = 26  # README.md and docs/ have 29 runnable hftk commands today; fewer means the parser lost some
MIN_PYTHON = 3  # and 4 distinct python snippets

TINY_PRETRAIN = [
    "model.config.hidden_size=32", "model.config.num_hidden_layers=3",  # the distil guide keeps layers 0 and 2
    "model.config.num_attention_heads=2",
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


def documented_pages() -> list[Path]:
    """README.md, then the site's pages in navigation order (generated references and results have no commands)."""
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]

    def walk(entries) -> list[str]:
        pages = []
        for entry in entries:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            pages += walk(value) if isinstance(value, list) else [value]
        return pages

    guides = [page for page in walk(nav) if not page.startswith(("reference/", "results/"))]
    return [ROOT / "README.md", *(ROOT / "docs" / page for page in guides)]


def code_blocks(path: Path) -> list[tuple[str, str]]:
    """(language, text) of each fenced bash or python block, in page order."""
    text = path.read_text(encoding="utf-8")
    return re.findall(r"^```(bash|python)\n(.*?)^```", text, flags=re.S | re.M)


def shell_commands(block: str) -> list[str]:
    """Each shell command of a bash block: continuations joined, `a && b` split, comments dropped."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        for is_sep, group in itertools.groupby(words, key=lambda w: w == "&&"):
            if not is_sep:
                commands.append(shlex.join(group))
    return commands


def readme_commands() -> list[str]:
    return [c for _, block in code_blocks(ROOT / "README.md") if _ == "bash" for c in shell_commands(block)]


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


def command_env() -> dict[str, str]:
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


def run_python(code: str, cwd: Path, env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"documented snippet failed:\n{code}\n{result.stderr[-3000:]}"


def run_command(command: str, cwd: Path, env: dict[str, str]) -> None:
    args = prepare(shlex.split(command), cwd)
    result = subprocess.run(
        [sys.executable, "-m", "hftk", *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, f"documented command failed: {command}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, command


@pytest.mark.slow
@pytest.mark.timeout(3600)  # ~30 runs, several minutes on an idle 2-core machine; far longer on a busy one
def test_every_documented_command_runs_as_written(tmp_path):
    make_fixtures(tmp_path)
    env = command_env()
    ran, snippets, skipped, seen = [], [], [], set()
    for page in documented_pages():
        where = page.relative_to(ROOT)
        for language, block in code_blocks(page):
            if language == "python":
                if block not in seen:
                    seen.add(block)
                    run_python(block, tmp_path, env)
                    snippets.append(where)
                continue
            for command in shell_commands(block):
                words = shlex.split(command)
                if words[0] == "export":  # the page sets the environment for what follows
                    env.update(item.split("=", 1) for item in words[1:])
                    continue
                reason = skip_reason(words)
                if reason is None and command in seen:
                    reason = "the same command ran above"
                if reason is not None:
                    skipped.append((where, command, reason))
                    continue
                assert words[0] == "hftk", f"{where}: command not covered by this test: {command}"
                seen.add(command)
                run_command(command, tmp_path, env)
                ran.append((where, command))
    assert len(ran) >= MIN_RUN, (ran, skipped)
    assert len(snippets) >= MIN_PYTHON, snippets
    # Every guide with commands ran some of them: a page whose blocks the parser missed would not.
    pages_with_commands = {where for where, _ in ran} | {where for where, _, _ in skipped}
    assert {Path("README.md"), Path("docs/finetuning.md"), Path("docs/distill-quantize.md")} <= {w for w, _ in ran}, pages_with_commands
    # The runs the pages promise exist where they say.
    for folder in ("runs/pretrain-default", "runs/pretrain-gpt", "runs/mine", "runs/finetune-qa", "runs/bert-as-hftk",
                   "runs/ff-teacher", "runs/ff-student", "runs/finetune-translation"):
        assert (tmp_path / folder / "config.json").is_file(), folder
    assert (tmp_path / "runs" / "ff-student-int8" / "model.safetensors").is_file()  # torchao int8, from_pretrained-loadable
    assert (tmp_path / "runs" / "ff-student-onnx" / "model_quantized.onnx").is_file()
    assert (tmp_path / "runs" / "pipeline-tiny" / "report.md").is_file()
