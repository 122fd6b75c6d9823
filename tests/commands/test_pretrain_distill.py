"""`hftk pretrain` with `distill.teacher`: tiny runs in this process (the CLI's own wiring is in test_pretrain.py).

The teacher is what a user has: the output of `hftk pretrain` itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hftk.errors import HftkError, TrainingInterrupted
from hftk.recipe import PretrainRecipe, load_recipe

SHARED = Path(os.environ.get("HFTK_SHARED_DIR", Path(__file__).resolve().parents[2] / ".." / "shared")).resolve()
TINY = [
    "model.config.hidden_size=32", "model.config.num_hidden_layers=2", "model.config.num_attention_heads=2",
    "model.config.intermediate_size=64", "model.config.max_position_embeddings=64", "tokenizer.vocab_size=300",
    "data.max_seq_length=32", "data.validation_split_percentage=10", "training.per_device_train_batch_size=8",
    "training.per_device_eval_batch_size=8", "training.max_time_minutes=null", "training.eval_steps=4",
    "training.max_eval_batches=2", "training.logging_steps=2", "training.save_steps=3", "training.num_threads=1",
    "training.report_to=[]",
]


def run(out: Path, *sets: str, recipe: str = "pretrain-default", resume: bool = False) -> Path:
    from hftk.commands.pretrain import pretrain

    loaded = load_recipe(PretrainRecipe, recipe, [*TINY, f"output.output_dir={out}", *sets])
    return pretrain(loaded, resume=resume)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    lines = (SHARED / "data" / "pretrain" / "austen.txt").read_text(encoding="utf-8").splitlines()[:300]
    path = tmp_path_factory.mktemp("corpus") / "austen.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def teachers(corpus, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("teachers")
    return {
        "mlm": run(root / "mlm", f"data.train_files={corpus}", "training.max_steps=3"),
        "clm": run(root / "clm", f"data.train_files={corpus}", "training.max_steps=2", recipe="pretrain-gpt"),
    }


def test_kill_and_resume_equals_uninterrupted_with_a_narrower_student_and_hidden_states(corpus, teachers, tmp_path, monkeypatch):
    """Ctrl-C at step 4, resume: the student's weights equal an uninterrupted run's (the projection is restored too)."""
    sets = [
        f"data.train_files={corpus}", f"distill.teacher={teachers['mlm']}", "distill.hidden_weight=1.0",
        "model.config.hidden_size=16", "model.config.intermediate_size=32", "training.max_steps=6",
    ]
    reference = run(tmp_path / "reference", *sets)
    monkeypatch.setenv("HFTK_FAULT", "step:4")
    monkeypatch.setenv("HFTK_FAULT_SIGNAL", "INT")
    with pytest.raises(TrainingInterrupted):
        run(tmp_path / "resumed", *sets)
    monkeypatch.delenv("HFTK_FAULT")
    resumed = run(tmp_path / "resumed", *sets, resume=True)

    expected, actual = load_file(reference / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert expected.keys() == actual.keys() and not any("projection" in name for name in expected)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
    first, second = (json.loads((run_dir / "metrics.json").read_text()) for run_dir in (reference, resumed))
    assert second["eval_loss"] == pytest.approx(first["eval_loss"], rel=1e-5)
    # The student trains with (and ships) the teacher's tokenizer; its config is the recipe's narrower model.
    assert json.loads((reference / "tokenizer.json").read_text()) == json.loads((teachers["mlm"] / "tokenizer.json").read_text())
    assert json.loads((reference / "config.json").read_text())["hidden_size"] == 16
    # The soft targets moved the student towards the teacher: a plain MLM run of the same student differs.
    plain = run(tmp_path / "plain", *[s for s in sets if not s.startswith("distill.")], f"tokenizer.name_or_path={teachers['mlm']}")
    own = load_file(plain / "model.safetensors")
    assert any(not torch.allclose(own[name], expected[name]) for name in expected)


def test_causal_student_from_teacher_layers(corpus, teachers, tmp_path):
    out = run(
        tmp_path / "clm-student", f"data.train_files={corpus}", f"distill.teacher={teachers['clm']}", "model.config={}",
        "distill.student_layers=[1]", "training.max_steps=2", "training.learning_rate=1e-9", recipe="pretrain-gpt",
    )
    student, teacher = load_file(out / "model.safetensors"), load_file(teachers["clm"] / "model.safetensors")
    config = json.loads((out / "config.json").read_text())
    assert config["num_hidden_layers"] == 1
    # teacher block 1 became block 0 (two steps at lr 1e-9 leave it as copied)
    block = [name for name in student if ".layers.0." in name]
    assert block
    for name in block:
        torch.testing.assert_close(student[name], teacher[name.replace(".layers.0.", ".layers.1.")], rtol=0, atol=1e-6)
    assert json.loads((out / "metrics.json").read_text())["perplexity"] > 1


@pytest.mark.parametrize(
    ("sets", "needles"),
    [
        (["distill.teacher=TEACHER_clm"], ["causal LM", "objective is mlm"]),
        (["distill.teacher=TEACHER_mlm", "tokenizer.name_or_path=TEACHER_clm"], ["share a tokenizer", "tokenizer.name_or_path"]),
        (["distill.teacher=TEACHER_mlm", "distill.student_layers=[0]"], ["not both", "model.config"]),
        (["distill.teacher=/nowhere"], ["has no config.json"]),
    ],
)
def test_teachers_that_cannot_teach_are_one_line_errors_and_nothing_is_written(corpus, teachers, tmp_path, sets, needles):
    sets = [s.replace("TEACHER_mlm", str(teachers["mlm"])).replace("TEACHER_clm", str(teachers["clm"])) for s in sets]
    with pytest.raises(HftkError) as error:
        run(tmp_path / "out", f"data.train_files={corpus}", *sets)
    message = str(error.value)
    assert "\n" not in message and all(needle in message for needle in needles), message
    assert not (tmp_path / "out").exists()
