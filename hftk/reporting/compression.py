"""The pipeline report's "Distillation and int8" table: each teacher stage beside its students and int8 copies.

Read back from the stage folders like the rest of the report: the score is the teacher stage's
reported metric (`test_*` where a test file was scored, else `eval_*`) in each folder's
metrics.json; parameters are counted from the fp32 safetensors (an int8 copy has its source's);
the size on disk is that of the weight files (`*.safetensors`, or `model_int8.pt`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hftk.recipe.pipeline import LoadedPipeline

HEADER = ["teacher stage", "model", "stage", "layers", "metric", "score", "share of teacher", "parameters", "weights on disk"]


def parameters(folder: Path) -> int | None:
    from safetensors import safe_open

    total = 0
    files = sorted(folder.glob("*.safetensors"))
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                total += _numel(handle.get_slice(name).get_shape())
    return total if files else None


def _numel(shape: list[int]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def weights_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for pattern in ("*.safetensors", "model_int8.pt") for path in folder.glob(pattern))


def compression_rows(pipeline: LoadedPipeline, stages: dict[str, dict]) -> list[dict[str, Any]]:
    """Teacher, students and int8 copies per finetune stage that has any of them (none: an empty list)."""
    from hftk.reporting.stages import quantized_stage, reported_metric

    quantized = set(pipeline.spec.quantize)
    rows = []
    for teacher in pipeline.finetune:
        family = [teacher, *(stage.folder for stage in pipeline.spec.distill if stage.teacher == teacher)]
        if len(family) == 1 and teacher not in quantized:
            continue
        key = reported_metric(stages[teacher]["metrics"], stages[teacher]["main_metric"])
        reference = stages[teacher]["metrics"].get(key)
        for name in family:
            for folder_name, precision in [(name, "fp32"), *([(quantized_stage(name), "int8")] if name in quantized else [])]:
                folder = pipeline.stage_dir(folder_name)
                metrics = json.loads((folder / "metrics.json").read_text())
                value = metrics.get(key)
                config = json.loads((pipeline.stage_dir(name) / "config.json").read_text())
                rows.append(
                    {
                        "teacher": teacher,
                        "model": f"{'teacher' if name == teacher else 'student'} {precision}",
                        "stage": folder_name,
                        "layers": config.get("num_hidden_layers"),
                        "metric": key,
                        "value": value,
                        "share_of_teacher": value / reference if isinstance(value, (int, float)) and reference else None,
                        "parameters": parameters(pipeline.stage_dir(name)),
                        "weights_bytes": weights_bytes(folder),
                    }
                )
    return rows


def compression_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The report section, or nothing when the pipeline distils and quantizes nothing."""
    if not rows:
        return []

    def cell(row: dict[str, Any]) -> list[str]:
        share = f"{100 * row['share_of_teacher']:.1f} %" if row["share_of_teacher"] is not None else "–"
        value = f"{row['value']:.4f}" if isinstance(row["value"], (int, float)) else "–"
        params = f"{row['parameters'] / 1e6:.2f} M" if row["parameters"] else "–"
        return [row["teacher"], row["model"], row["stage"], str(row["layers"]), row["metric"], value, share, params,
                f"{row['weights_bytes'] / 1e6:.2f} MB"]

    return [
        "## Distillation and int8",
        "",
        "Each distilled student and int8 copy (`hftk quantize`: int8 Linear weights, dynamic int8 activations, "
        "for CPU) scored on its teacher stage's data, by the teacher stage's reported metric.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
        *("| " + " | ".join(cell(row)) + " |" for row in rows),
        "",
    ]
