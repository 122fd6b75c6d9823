"""What `--resume` accepts: a recipe that differs from the checkpoint's only where training cannot change."""

from __future__ import annotations

import copy

import pytest
import yaml

from hftk.errors import HftkError
from hftk.recipe import FinetuneRecipe, PretrainRecipe, dump_recipe, load_recipe
from hftk.training.resume_check import RECIPE_FILE, check_resume, refused


def recipe(**changes) -> dict:
    """The resolved default pretraining recipe as a dict, with `section.key=value` changes."""
    data = yaml.safe_load(dump_recipe(load_recipe(PretrainRecipe, "pretrain-default", [f"{k}={v}" for k, v in changes.items()])))
    return data


def test_only_keys_that_cannot_change_training_may_differ():
    old = recipe()
    allowed = recipe(**{"training.logging_steps": 1, "training.report_to": "[]", "training.num_threads": 1, "training.save_steps": 7, "training.save_total_limit": 5,
                        "training.gradient_checkpointing": "true", "output.output_dir": "elsewhere", "output.push_to_hub": "true"})
    assert refused(old, allowed) == {}
    changed = recipe(**{"training.learning_rate": 3e-4, "model.config.hidden_dropout_prob": 0.1, "data.mlm_probability": 0.2,
                        "training.seed": 7, "training.per_device_train_batch_size": 8})
    assert refused(old, changed) == {
        "data.mlm_probability": (0.25, 0.2), "model.config.hidden_dropout_prob": (0.0, 0.1),
        "training.learning_rate": (0.001, 3e-4), "training.per_device_train_batch_size": (32, 8), "training.seed": (42, 7),
    }


def test_the_evaluation_batch_size_may_change_unless_max_eval_batches_caps_the_rows_read():
    old = recipe(**{"training.max_eval_batches": "null"})
    assert refused(old, recipe(**{"training.max_eval_batches": "null", "training.per_device_eval_batch_size": 8})) == {}
    capped = recipe()  # the default recipe reads 8 evaluation batches
    assert list(refused(capped, recipe(**{"training.per_device_eval_batch_size": 8}))) == ["training.per_device_eval_batch_size"]


def test_a_longer_step_budget_needs_a_schedule_that_ignores_the_planned_end():
    linear = recipe(**{"training.max_steps": 100})
    assert refused(linear, recipe(**{"training.max_steps": 200})) == {"training.max_steps": (100, 200)}
    constant = {"training.lr_scheduler_type": "constant"}
    assert refused(recipe(**constant, **{"training.max_steps": 100}), recipe(**constant, **{"training.max_steps": 200})) == {}
    assert list(refused(recipe(**constant, **{"training.max_steps": 100}), recipe(**constant, **{"training.max_steps": 50}))) == [
        "training.max_steps"  # shorter: the checkpoint may already be past the new end
    ]
    # constant_with_warmup warms up over warmup_ratio of the planned steps unless warmup_steps fixes it
    ratio = {"training.lr_scheduler_type": "constant_with_warmup"}
    assert refused(recipe(**ratio, **{"training.max_steps": 100}), recipe(**ratio, **{"training.max_steps": 200}))
    fixed = {**ratio, "training.warmup_steps": 10}
    assert refused(recipe(**fixed, **{"training.max_steps": 100}), recipe(**fixed, **{"training.max_steps": 200})) == {}


def test_the_time_budget_may_change_beside_a_step_budget_only():
    assert refused(recipe(), recipe(**{"training.max_time_minutes": 60})) == {}  # max_steps 500 sets the schedule
    timed = {"training.max_steps": "null", "training.num_train_epochs": "null"}
    assert list(refused(recipe(**timed, **{"training.max_time_minutes": 5}), recipe(**timed, **{"training.max_time_minutes": 9}))) == [
        "training.max_time_minutes"
    ]


def test_a_fine_tuning_recipe_compares_its_own_keys():
    def finetune(*sets: str) -> dict:
        return yaml.safe_load(dump_recipe(load_recipe(FinetuneRecipe, "finetune-classification", ["task=classification", *sets])))

    assert refused(finetune(), finetune("data.test_file=t.jsonl", "training.logging_steps=1")) == {}
    assert list(refused(finetune(), finetune("generation.num_beams=4", "lora.r=8"))) == ["generation.num_beams", "lora.r"]


def test_check_resume_names_every_refused_key_in_one_line(tmp_path):
    (tmp_path / RECIPE_FILE).write_text(yaml.safe_dump(recipe()))
    check_resume(tmp_path, yaml.safe_dump(recipe(**{"training.logging_steps": 1})))
    new = copy.deepcopy(recipe(**{"training.learning_rate": 3e-4, "training.max_steps": 1000}))
    with pytest.raises(HftkError) as refusal:
        check_resume(tmp_path, yaml.safe_dump(new))
    message = str(refusal.value)
    assert "\n" not in message
    assert message.startswith(
        f"{tmp_path}'s checkpoint was trained with another recipe: training.learning_rate 0.001 -> 0.0003, training.max_steps 500 -> 1000 "
        "(a longer step budget needs a constant learning-rate schedule"
    )
    assert message.endswith("restore these values, or start a new run with --overwrite or another output folder")


def test_a_folder_without_a_recorded_recipe_resumes_as_before(tmp_path):
    check_resume(tmp_path, yaml.safe_dump(recipe(**{"training.learning_rate": 3e-4})))  # older checkpoints: nothing to compare
