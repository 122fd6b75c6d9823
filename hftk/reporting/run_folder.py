"""Finishing a run folder: the final artifacts, model card and loss plot included, moved in with metrics.json last."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from hftk.reporting.model_card import write_model_card
from hftk.training.checkpoint import write_json_atomic
from hftk.training.outputs import FINISHED_MARKER, write_model_folder
from hftk.training.plots import plot_loss_curve


def finish_run(
    output_dir: Path,
    *,
    model,
    tokenizer,
    recipe_yaml: str,
    metrics: dict[str, Any],
    log_history: list[dict],
    card: dict[str, Any] | None = None,
    extra_files: dict[str, str] | None = None,
    state_dict: dict | None = None,
) -> None:
    """Write the final artifacts into a staging folder, then move them in with metrics.json last."""
    staging = output_dir / ".final.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    write_model_folder(model, tokenizer, staging, state_dict)
    (staging / "recipe.yaml").write_text(recipe_yaml)
    (staging / "log_history.json").write_text(json.dumps(log_history, indent=2) + "\n")
    for name, text in (extra_files or {}).items():
        (staging / name).write_text(text)
    plot_loss_curve(log_history, staging / "loss.png", title=output_dir.name)
    write_json_atomic(staging / FINISHED_MARKER, metrics)
    write_model_card(staging, **(card or {}))
    (output_dir / FINISHED_MARKER).unlink(missing_ok=True)
    for path in sorted(staging.iterdir(), key=lambda p: p.name == FINISHED_MARKER):
        os.replace(path, output_dir / path.name)
    staging.rmdir()
