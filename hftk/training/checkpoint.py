"""Atomic checkpoints: write into a temporary folder, then rename.

A checkpoint folder named `step-N` is complete by construction (rename is atomic on POSIX),
so a run killed at any moment leaves only complete checkpoints plus, at worst, a
`.tmp-step-N` folder that resuming ignores and removes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE = "trainer_state.json"
CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)$")


@dataclass
class TrainState:
    """Where training stands: saved beside the Accelerate state in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    tokens_seen: int = 0
    elapsed_seconds: float = 0.0
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    log_history: list[dict] = field(default_factory=list)
    wall_seconds: float = 0.0  # the whole command's wall clock (set-up included), summed over resumed sessions
    planned_steps: int | None = None  # what the step/epoch/token budget allows (None: only a time budget)
    stopped_by: str | None = None  # the recipe key whose limit ended training, e.g. max_steps, max_time_minutes

    @classmethod
    def load(cls, folder: Path) -> TrainState:
        return cls(**json.loads((folder / STATE_FILE).read_text()))

    def save(self, folder: Path) -> None:
        write_json_atomic(folder / STATE_FILE, asdict(self))


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def checkpoints_dir(output_dir: Path) -> Path:
    return output_dir / "checkpoints"


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    folder = checkpoints_dir(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    return [p for _, p in sorted(found) if (p / STATE_FILE).is_file()]


def latest_checkpoint(output_dir: Path) -> Path | None:
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def temporary_checkpoint(output_dir: Path, step: int) -> Path:
    tmp = checkpoints_dir(output_dir) / f".tmp-step-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def publish_checkpoint(tmp: Path, step: int, keep: int) -> Path:
    """Rename the finished temporary folder into place, then drop all but the newest `keep`."""
    final = tmp.parent / f"step-{step}"
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in list_checkpoints(tmp.parent.parent)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def remove_partial_checkpoints(output_dir: Path) -> None:
    folder = checkpoints_dir(output_dir)
    if folder.is_dir():
        for partial in folder.glob(".tmp-step-*"):
            shutil.rmtree(partial, ignore_errors=True)


def load_model_weights(model, folder: Path) -> None:
    """Load the weights `save_pretrained` wrote into `folder` into `model` (a LoRA model gets its adapter back).

    Checkpoints keep the model once, as the loadable folder `model/`; resuming reads the weights
    from there instead of a second copy in Accelerate's own format.
    """
    from peft import PeftModel, set_peft_model_state_dict

    from hftk.errors import HftkError

    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    state = read_safetensors(folder)
    if isinstance(model, PeftModel):
        set_peft_model_state_dict(model, state)
        return
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied copies are not saved: every tie of every submodule (hftk_seq2seq ties its encoder's token table too).
    expand = getattr(model, "get_expanded_tied_weights_keys", None)
    tied = set(expand(all_submodels=True) if expand else getattr(model, "_tied_weights_keys", None) or {})
    if unexpected or set(missing) - tied:
        raise HftkError(f"the weights in {folder} do not fit the model: missing {missing}, unexpected {unexpected}")
    model.tie_weights()


def read_safetensors(folder: Path) -> dict:
    """Every tensor of the `*.safetensors` files `save_pretrained` wrote into `folder` (shards merged)."""
    from safetensors.torch import load_file

    state: dict = {}
    for file in sorted(folder.glob("*.safetensors")):
        state.update(load_file(file))
    return state
