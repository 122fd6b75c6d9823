"""`hftk finetune glue --task all`: the nine GLUE tasks in turn, then one results table."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from hftk.errors import HftkError
from hftk.commands.finetune import finetune
from hftk.recipe import FinetuneRecipe
from hftk.tasks.glue import GLUE_TASKS, get_glue_task

GLUE_NAMES = tuple(GLUE_TASKS)  # cola ... wnli, in the GLUE paper's order


def run_glue_benchmark(recipe_for: Callable[[str], FinetuneRecipe], resume: bool = False) -> str:
    """Fine-tune each task into OUTPUT_DIR/TASK (file paths may contain `{task}`); write glue_results.{json,md}."""
    base = recipe_for(GLUE_NAMES[0])
    root = Path(base.output.output_dir)
    scores: dict[str, dict[str, float]] = {}
    for name in GLUE_NAMES:
        recipe = recipe_for(name)
        for key in ("train_file", "validation_file"):
            value = getattr(recipe.data, key)
            if value and "{task}" in value:
                setattr(recipe.data, key, value.format(task=name))
        recipe.output.output_dir = str(root / name)
        done = Path(recipe.output.output_dir) / "metrics.json"
        if not done.is_file() or recipe.output.overwrite:
            finetune(recipe, resume=resume and (Path(recipe.output.output_dir) / "checkpoints").is_dir())
        metrics = json.loads(done.read_text())
        main = f"eval_{get_glue_task(name).main_metric}"
        if main not in metrics:
            raise HftkError(f"GLUE {name}: {main} missing from {done}")
        scores[name] = {k.removeprefix("eval_"): v for k, v in metrics.items() if k.startswith("eval_") and "loss" not in k and k != "eval_samples"}
        scores[name]["score"] = metrics[main]
    average = sum(s["score"] for s in scores.values()) / len(scores)
    lines = ["| task | main metric | score |", "|---|---|---|"]
    lines += [f"| {t} | {get_glue_task(t).main_metric} | {100 * s['score']:.1f} |" for t, s in scores.items()]
    lines.append(f"| **average** | | **{100 * average:.1f}** |")
    table = "\n".join(lines)
    root.mkdir(parents=True, exist_ok=True)
    (root / "glue_results.json").write_text(json.dumps({"tasks": scores, "average": average}, indent=2) + "\n")
    (root / "glue_results.md").write_text(table + "\n")
    return table
