"""`hftk evaluate TASK --model FOLDER`: score a saved model on a task's evaluation data.

Writes metrics.json and predictions.jsonl into the output folder; no training, no checkpoints.
"""

from __future__ import annotations

from pathlib import Path

from hftk.commands.finetune import finetune
from hftk.recipe import FinetuneRecipe


def evaluate(recipe: FinetuneRecipe) -> Path:
    """Evaluate `recipe.model.name_or_path` as the recipe's task would after training; returns the output folder."""
    return finetune(recipe, evaluate_only=True)
