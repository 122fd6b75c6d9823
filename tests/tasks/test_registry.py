"""The task registry (hftk.recipe.tasks) is the one list of tasks: everything that names tasks agrees with it."""

from __future__ import annotations

import importlib
import typing

import pytest
import transformers

from hftk.metrics import available_metrics
from hftk.recipe import FinetuneRecipe, load_recipe, recipe_paths
from hftk.recipe.distill import DistillRecipe
from hftk.recipe.pipeline import FinetuneStage
from hftk.recipe.tasks import DISTILL_TASKS, SEQ2SEQ_TASKS, TASK_NAMES, TASKS
from hftk.tasks import get_task


def test_registry_lists_the_documented_tasks():
    assert TASK_NAMES == ("glue", "classification", "qa", "ner", "generation", "translation", "summarization")
    assert SEQ2SEQ_TASKS == ("translation", "summarization")
    assert DISTILL_TASKS == ("glue", "classification", "qa", "ner")


@pytest.mark.parametrize("name", TASK_NAMES)
def test_each_task_has_its_module_recipe_head_and_metrics(name):
    spec = TASKS[name]
    prepare = get_task(name)
    assert prepare is getattr(importlib.import_module(spec.module), spec.prepare)
    assert spec.recipe in recipe_paths()
    assert load_recipe(FinetuneRecipe, spec.recipe, []).task == name
    assert hasattr(transformers, spec.auto_class)
    assert set(spec.metrics) <= set(available_metrics())


def test_recipe_schemas_accept_exactly_the_registered_tasks():
    for model, field, names in ((FinetuneRecipe, "task", TASK_NAMES), (FinetuneStage, "task", TASK_NAMES), (DistillRecipe, "task", DISTILL_TASKS)):
        assert typing.get_args(model.model_fields[field].annotation) == names
