"""The run folder: refusing to clobber finished runs, saving a model folder.

A finished run folder holds the model (safetensors, config with `auto_map`, code files),
the tokenizer, `recipe.yaml`, `loss.png`, the model card `README.md`, `log_history.json`
and, moved into place last, `metrics.json`: a folder without it is not a finished run
(`hftk.reporting.run_folder.finish_run` writes them).
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from accelerate import Accelerator

from hftk.data.tokenizer import save_tokenizer
from hftk.errors import HftkError
from hftk.training import output_lock
from hftk.training.checkpoint import latest_checkpoint
from hftk.training.distributed import as_plain_module
from hftk.training.resume_check import RECIPE_FILE, check_resume

FINISHED_MARKER = "metrics.json"

Run = TypeVar("Run", bound=Callable[..., Path])


def check_output_dir(output_dir: Path) -> None:
    """HftkError if the output folder is a file or cannot be created there (checked, not created)."""
    output_dir = Path(output_dir)
    if output_dir.exists():
        if not output_dir.is_dir():
            raise HftkError(f"output folder {output_dir} is a file; choose another --output-dir")
        if not os.access(output_dir, os.W_OK | os.X_OK):
            raise HftkError(f"output folder {output_dir} is not writable; choose another --output-dir")
        return
    parent = output_dir.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise HftkError(f"cannot create output folder {output_dir}: {parent} is a file; choose another --output-dir")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise HftkError(f"cannot create output folder {output_dir}: {parent} is not writable; choose another --output-dir")


def check_device_settings(training, accelerator: Accelerator) -> None:
    """Settings the device cannot honour fail before any work (Accelerate would ignore them silently)."""
    if training.mixed_precision == "fp16" and accelerator.device.type == "cpu":
        raise HftkError(
            "training.mixed_precision=fp16 needs a GPU (on CPU it would silently train in fp32): "
            "use bf16 or no on CPU"
        )


def removes_new_output_dir_on_error(run: Run) -> Run:
    """A run that fails leaves no folder it created, unless it holds a checkpoint to resume from; its lock ends with it.

    The recipe is the run's first argument; its output.output_dir is the folder. The run takes the
    folder's lock (`output_lock.hold_for_run`) once its processes are up; only the process holding
    it removes anything, so a run refused because another one writes the folder leaves it alone.
    """

    @functools.wraps(run)
    def wrapper(recipe, *args, **kwargs):
        output_dir = Path(recipe.output.output_dir)
        created = _first_missing(output_dir)  # the folder (or a parent of it) this run would create
        try:
            return run(recipe, *args, **kwargs)
        except BaseException:  # Ctrl-C in data preparation too: nothing half-made stays behind
            if created is not None and created.is_dir() and latest_checkpoint(output_dir) is None and output_lock.holds(output_dir):
                shutil.rmtree(created, ignore_errors=True)
            raise
        finally:
            output_lock.release_for_run(output_dir)

    return wrapper  # type: ignore[return-value]


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (None if `path` exists)."""
    path, missing = path.absolute(), None
    while not path.exists() and path != path.parent:
        path, missing = path.parent, path
    return missing


def prepare_output_dir(
    output_dir: Path, *, overwrite: bool, resume: bool, accelerator: Accelerator, recipe_yaml: str | None = None
) -> Path | None:
    """Check the folder suits the run; return the checkpoint to resume from (or None).

    `recipe_yaml`: the run's resolved recipe, written into the folder as the run starts; resuming
    refuses a recipe that differs from it in a way that could change what is trained (`resume_check`).
    """
    finished = (output_dir / FINISHED_MARKER).is_file()
    checkpoint = latest_checkpoint(output_dir)
    if resume:
        if finished:
            raise HftkError(f"{output_dir} holds a finished run, nothing to resume; use --overwrite to train again")
        if checkpoint is None:
            raise HftkError(f"nothing to resume in {output_dir}: no complete checkpoint; run without --resume")
        if recipe_yaml is not None:
            check_resume(output_dir, recipe_yaml)
            _record_recipe(output_dir, recipe_yaml, accelerator)  # what may differ (logging, ...) as this session runs it
        return checkpoint
    if finished and not overwrite:
        raise HftkError(f"{output_dir} already holds a finished run; pass --overwrite or choose another --output-dir")
    if checkpoint is not None and not overwrite:
        raise HftkError(f"{output_dir} holds an interrupted run; pass --resume to continue it or --overwrite to start over")
    check_output_dir(output_dir)
    if accelerator.is_main_process:
        if overwrite and output_dir.exists():
            shutil.rmtree(output_dir)
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise HftkError(f"cannot create output folder {output_dir} ({error.strerror}); choose another --output-dir") from None
    if recipe_yaml is not None:
        _record_recipe(output_dir, recipe_yaml, accelerator)
    accelerator.wait_for_everyone()
    return None


def _record_recipe(output_dir: Path, recipe_yaml: str, accelerator: Accelerator) -> None:
    if accelerator.is_main_process:
        tmp = output_dir / f".{RECIPE_FILE}.tmp"
        tmp.write_text(recipe_yaml)
        os.replace(tmp, output_dir / RECIPE_FILE)


def write_model_folder(model, tokenizer, folder: Path, state_dict: dict | None = None) -> None:
    """Weights (safetensors), config with auto_map, code files and the tokenizer: a loadable folder.

    `state_dict`: the full weights gathered from every process when the model is sharded (FSDP).
    """
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper: save the real module's names
    with as_plain_module(model):
        model.save_pretrained(folder, **({} if state_dict is None else {"state_dict": state_dict}))
    if tokenizer is not None:
        save_tokenizer(tokenizer, folder)
    respect_umask(folder.glob("*.safetensors"))


def respect_umask(paths) -> None:
    """Give files the mode the user's umask asks for (0644 under the usual 022).

    transformers writes weights through a private temporary file (mode 0600) and renames it,
    so without this `model.safetensors` alone would be unreadable to others.
    """
    umask = os.umask(0)
    os.umask(umask)
    for path in paths:
        os.chmod(path, 0o666 & ~umask)
