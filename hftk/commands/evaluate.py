"""`hftk evaluate TASK --model FOLDER`: score a saved model on a task's evaluation data.

Writes metrics.json and predictions.jsonl into the output folder beside whatever is there (it
never clears the folder); no training, no checkpoints, no trackers. The model, data and
metrics are built exactly as `hftk finetune` builds them for its own evaluations.
"""

from __future__ import annotations

import json
from pathlib import Path

from accelerate.utils import set_seed

from hftk.commands.finetune import Evaluator, build_task_model, load_task, metric_info, write_predictions
from hftk.recipe import FinetuneRecipe, dump_recipe
from hftk.training.checkpoint import write_json_atomic
from hftk.training.outputs import removes_new_output_dir_on_error
from hftk.training.session import start_session


@removes_new_output_dir_on_error
def evaluate(recipe: FinetuneRecipe) -> Path:
    """Evaluate `recipe.model.name_or_path` as the recipe's task would after training; returns the output folder."""
    output_dir = Path(recipe.output.output_dir)
    accelerator = start_session(recipe.training, output_dir, dump_recipe(recipe), log=False)
    tokenizer, config, task = load_task(recipe, accelerator, evaluate_only=True)
    set_seed(recipe.training.seed)
    model, _ = build_task_model(recipe, task, config, accelerator, evaluate_only=True)
    evaluator = Evaluator(recipe, task, tokenizer, accelerator)
    output_dir.mkdir(parents=True, exist_ok=True)
    metrics = evaluator(accelerator.prepare(model))
    metrics.update(metric_info(task, evaluator))
    if accelerator.is_main_process:
        write_predictions(output_dir, task, evaluator, tokenizer)
        write_json_atomic(output_dir / "metrics.json", metrics)
    accelerator.print(json.dumps(metrics, indent=2))
    return output_dir
