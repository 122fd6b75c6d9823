"""The `hftk` command line: help texts, `hftk recipes`, and every shipped recipe validates."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from hftk.recipe import FinetuneRecipe, PretrainRecipe, load_recipe, recipe_paths


def run_hftk(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "hftk", *args], capture_output=True, text=True, env=env, timeout=120)


def test_top_level_help_lists_commands():
    result = run_hftk("--help")
    assert result.returncode == 0, result.stderr
    for command in ("pretrain", "finetune", "evaluate", "distill", "quantize", "recipes", "convert", "push"):
        assert command in result.stdout


def test_pretrain_help_explains_options():
    result = run_hftk("pretrain", "--help")
    assert result.returncode == 0, result.stderr
    for option in ("--set", "--output-dir", "--resume", "--overwrite", "--push-to-hub"):
        assert option in result.stdout
    assert "pretrain-default" in result.stdout


def test_finetune_help_explains_options():
    result = run_hftk("finetune", "--help")
    assert result.returncode == 0, result.stderr
    for option in ("--model", "--recipe", "--task", "--set", "--output-dir", "--resume", "--overwrite"):
        assert option in result.stdout
    for task in ("glue", "classification", "qa", "ner", "generation", "lora.r"):
        assert task in result.stdout


def test_recipes_list_names_every_shipped_recipe():
    result = run_hftk("recipes", "list")
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert sorted(names) == sorted(recipe_paths())
    assert {"pretrain-default", "finetune-classification", "finetune-glue", "finetune-qa", "finetune-ner", "finetune-generation"} <= set(names)


def test_recipes_show_prints_the_file():
    result = run_hftk("recipes", "show", "pretrain-default")
    assert result.returncode == 0, result.stderr
    assert result.stdout == recipe_paths()["pretrain-default"].read_text()


def test_recipes_show_unknown_is_one_line_error():
    result = run_hftk("recipes", "show", "no-such-recipe")
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [result.stderr.strip()]
    assert "hftk recipes list" in result.stderr


@pytest.mark.parametrize("name", sorted(recipe_paths()))
def test_every_shipped_recipe_validates(name):
    path = recipe_paths()[name]
    raw = yaml.safe_load(path.read_text())
    if name.startswith("pipeline-"):  # `hftk run` pipelines: their own schema, every stage's recipe built
        from hftk.pipeline import load_pipeline

        loaded = load_pipeline(name)
        assert loaded is not None
        return
    from hftk.distill.recipe import DistillRecipe

    recipe_class = FinetuneRecipe if "task" in raw else PretrainRecipe
    if name.startswith("distill-"):
        recipe_class = DistillRecipe
    recipe = load_recipe(recipe_class, name)
    if recipe_class is DistillRecipe:
        assert name == f"distill-{recipe.task}"
    elif recipe_class is FinetuneRecipe:
        assert name == f"finetune-{recipe.task}"
    # Every key in the file survived validation (extra keys are refused, so nothing was ignored).
    dumped = recipe.model_dump(mode="json")
    for section, values in raw.items():
        if isinstance(values, dict):
            for key, value in values.items():
                if not isinstance(value, dict):
                    assert dumped[section][key] == value or float(dumped[section][key]) == float(value), (section, key)


def test_unknown_task_is_one_line_error(tmp_path):
    result = run_hftk("finetune", "sentiment", "--model", str(tmp_path), "-o", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "sentiment" in errors[0] and "classification" in errors[0]
    assert "Traceback" not in result.stderr
