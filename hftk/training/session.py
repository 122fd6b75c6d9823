"""What every training command shares around the loop: the Accelerator and its checks, the tracked run, the ending.

`hftk pretrain`, `hftk finetune` (and `hftk distill`, through it) and `hftk evaluate` start
the same way: the recipe's thread count, an Accelerator with seedable samplers, and the
settings the device cannot honour, the output folder and (under several processes) the
recipe checked before any data is read.
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration

from hftk.recipe import flat_config
from hftk.training import output_lock
from hftk.training.checkpoint import TrainState
from hftk.training.distributed import check_same_recipe, make_accelerator
from hftk.training.loop import TrainingHooks, train
from hftk.training.outputs import check_device_settings, check_output_dir


def start_session(training, output_dir: Path, recipe_yaml: str, *, log: bool = True) -> Accelerator:
    """The Accelerator of one command, after the checks that need no data: the folder's lock, device settings, folder, same recipe everywhere.

    `log=False` (evaluation only) starts no trackers.
    """
    if training.num_threads:
        torch.set_num_threads(training.num_threads)
    accelerator = make_accelerator(
        mixed_precision=training.mixed_precision,
        log_with=(training.report_to or None) if log else None,
        project_dir=str(output_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    output_lock.hold_for_run(output_dir, accelerator)  # until the run ends (`removes_new_output_dir_on_error` releases it)
    check_device_settings(training, accelerator)
    check_output_dir(output_dir)
    check_same_recipe(accelerator, recipe_yaml)
    return accelerator


def run_training(
    accelerator: Accelerator,
    model: torch.nn.Module,
    train_loader,
    recipe,
    output_dir: Path,
    hooks: TrainingHooks,
    *,
    resume: bool,
    session_start: float,
) -> tuple[torch.nn.Module, TrainState]:
    """The recipe's hyperparameters to the trackers (TensorBoard's hparams), then the shared loop."""
    accelerator.init_trackers("logs", config=flat_config(recipe))
    return train(accelerator, model, train_loader, recipe.training, output_dir, hooks, resume=resume, session_start=session_start)


def end_session(accelerator: Accelerator) -> None:
    """Every process reaches the end before any leaves; the trackers and the process group close."""
    accelerator.wait_for_everyone()
    accelerator.end_training()  # also ends the process group, or gloo processes abort at exit
