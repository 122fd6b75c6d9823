"""The stages of an `hftk run` pipeline as the report and the pushes see them: folder names, the metric each is judged by."""

from __future__ import annotations

from typing import Any

from hftk.recipe.pipeline import BASELINE_PREFIX, PRETRAIN_STAGE, LoadedPipeline
from hftk.reporting import noise

INT8_SUFFIX = "-int8"


def trained_stages(pipeline: LoadedPipeline) -> list[str]:
    """Stage folder names in run order (the random-init folder is not a trained model; int8 folders are copies)."""
    names = [PRETRAIN_STAGE, *pipeline.finetune]
    if pipeline.spec.baseline is not None:
        names += [BASELINE_PREFIX + name for name in pipeline.finetune]
    return [*names, *pipeline.distill]


def quantized_stage(name: str) -> str:
    return f"{name}{INT8_SUFFIX}"


def reported_metric(metrics: dict[str, Any], main_metric: str | None) -> str | None:
    """The number a stage is judged by: `test_<main>` when a test file was scored once, else `eval_<main>`.

    The validation file chose the checkpoint, so its score is optimistic; the test score is not.
    """
    if not main_metric:
        return None
    test_key = "test_" + noise.metric_name(main_metric)
    return test_key if test_key in metrics else main_metric
