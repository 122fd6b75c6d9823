"""The pipeline report: what the pretraining bought, in one page (`report.md`) and one file (`report.json`).

Everything is read back from the stage folders (`metrics.json`, `log_history.json`,
`recipe.yaml`), never from memory, so a report rebuilt after a re-run that skipped every
stage says exactly what the folders hold. Plots: `loss_curves.png` (every stage),
`results_<stage>.png` (pretrained vs baseline per task) and `results_table.png`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hftk.errors import HftkError  # noqa: E402
from hftk.training.checkpoint import write_json_atomic  # noqa: E402

if TYPE_CHECKING:
    from hftk.pipeline import LoadedPipeline

# Bookkeeping counts and thresholds are not results; losses are plotted as curves instead.
NOT_RESULTS = ("loss", "perplexity", "total", "thresh")


def read_stage(folder: Path) -> dict[str, Any]:
    """metrics, log history and the metric the run selected its model by."""
    metrics_path = folder / "metrics.json"
    if not metrics_path.is_file():
        raise HftkError(f"stage folder {folder} has no metrics.json: the stage did not finish; run the pipeline again")
    history_path = folder / "log_history.json"
    recipe_path = folder / "recipe.yaml"
    recipe = yaml.safe_load(recipe_path.read_text()) if recipe_path.is_file() else {}
    return {
        "folder": str(folder),
        "metrics": json.loads(metrics_path.read_text()),
        "log_history": json.loads(history_path.read_text()) if history_path.is_file() else [],
        "main_metric": (recipe.get("training") or {}).get("metric_for_best_model"),
    }


def result_keys(metrics: dict[str, Any], main_metric: str | None) -> list[str]:
    """The task's result metrics (`eval_*` of the first eval split), main metric first."""
    keys = [
        key
        for key, value in metrics.items()
        if key.startswith("eval_") and isinstance(value, (int, float)) and not any(word in key for word in NOT_RESULTS)
    ]
    if main_metric in keys:
        keys.remove(main_metric)
        keys.insert(0, main_metric)
    return keys


def collect(pipeline: LoadedPipeline) -> tuple[dict[str, Any], dict[str, dict]]:
    """report.json's content: every stage's metrics, and per task the pretrained vs baseline rows."""
    from hftk.pipeline import BASELINE_PREFIX, PRETRAIN_STAGE, trained_stages

    stages = {name: read_stage(pipeline.stage_dir(name)) for name in trained_stages(pipeline)}
    results = []
    for name, recipe in pipeline.finetune.items():
        stage = stages[name]
        baseline = stages.get(BASELINE_PREFIX + name)
        for key in result_keys(stage["metrics"], stage["main_metric"]):
            results.append(
                {
                    "stage": name,
                    "task": recipe.task,
                    "metric": key,
                    "main": key == stage["main_metric"],
                    "pretrained": stage["metrics"][key],
                    "baseline": baseline["metrics"].get(key) if baseline else None,
                }
            )
    pretrain_metrics = stages[PRETRAIN_STAGE]["metrics"]
    return {
        "output_dir": str(pipeline.output_dir),
        "pretrain": {k: pretrain_metrics.get(k) for k in ("eval_loss", "perplexity", "train_steps", "tokens_seen", "num_parameters")},
        "stages": {name: {k: v for k, v in stage.items() if k != "log_history"} for name, stage in stages.items()},
        "results": results,
    }, stages


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def _save(figure, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.tight_layout()
    figure.savefig(tmp)
    plt.close(figure)
    tmp.replace(path)


def loss_panels(stages: dict[str, dict]) -> dict[str, dict[str, list[dict]]]:
    """Panel title -> {curve label -> log history}: pretraining alone, each task with its baseline."""
    from hftk.pipeline import BASELINE_PREFIX

    panels: dict[str, dict[str, list[dict]]] = {}
    for name, stage in stages.items():
        if name.startswith(BASELINE_PREFIX) and name.removeprefix(BASELINE_PREFIX) in panels:
            panels[name.removeprefix(BASELINE_PREFIX)]["baseline"] = stage["log_history"]
        else:
            panels[name] = {"pretrained" if name != "pretrain" else "": stage["log_history"]}
    return panels


def plot_loss_curves(stages: dict[str, dict], path: Path) -> None:
    """One panel per task (pretrained and baseline runs), plus pretraining: train and eval loss by step."""
    panels = loss_panels(stages)
    columns = min(2, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 3.4 * rows), dpi=100, squeeze=False)
    for axis, (title, curves) in zip(axes.flat, panels.items()):
        for index, (label, history) in enumerate(curves.items()):
            color = f"C{index}"
            prefix = f"{label} " if label else ""
            train = [(r["step"], r["loss"]) for r in history if "loss" in r]
            evals = [(r["step"], r["eval_loss"]) for r in history if "eval_loss" in r]
            if train:
                axis.plot(*zip(*train), color=color, alpha=0.6, label=f"{prefix}train")
            if evals:
                axis.plot(*zip(*evals), color=color, marker="o", linestyle="--", label=f"{prefix}eval")
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.set_ylabel("loss")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    _save(figure, path)


def plot_task_results(rows: list[dict], title: str, path: Path) -> None:
    """Grouped bars: each result metric, pretrained vs baseline."""
    labels = [row["metric"].removeprefix("eval_") for row in rows]
    positions = range(len(rows))
    has_baseline = any(row["baseline"] is not None for row in rows)
    width = 0.4 if has_baseline else 0.6
    figure, axis = plt.subplots(figsize=(max(4.0, 1.1 * len(rows) + 1.5), 3.5), dpi=100)
    shift = width / 2 if has_baseline else 0.0
    axis.bar([p - shift for p in positions], [row["pretrained"] for row in rows], width, label="pretrained")
    if has_baseline:
        values = [row["baseline"] if row["baseline"] is not None else 0.0 for row in rows]
        axis.bar([p + shift for p in positions], values, width, label="baseline (random init)")
    axis.set_xticks(list(positions), labels, rotation=30, ha="right")
    axis.set_title(title)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8)
    _save(figure, path)


def table_rows(results: list[dict]) -> list[list[str]]:
    """Main metric per task: stage, task, metric, pretrained, baseline, difference."""
    rows = []
    for row in results:
        if not row["main"]:
            continue
        delta = row["pretrained"] - row["baseline"] if row["baseline"] is not None else None
        signed = None if delta is None else f"{delta:+.4f}" if abs(delta) < 10 else f"{delta:+.2f}"
        rows.append([row["stage"], row["task"], row["metric"], _fmt(row["pretrained"]), _fmt(row["baseline"]), signed or "–"])
    return rows


TABLE_HEADER = ["stage", "task", "metric", "pretrained", "baseline", "pretrained − baseline"]


def plot_table(rows: list[list[str]], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(9, 0.45 * (len(rows) + 1) + 0.4), dpi=100)
    axis.axis("off")
    if rows:
        table = axis.table(cellText=rows, colLabels=TABLE_HEADER, loc="center", cellLoc="center")
        table.scale(1, 1.3)
    _save(figure, path)


def markdown(report: dict[str, Any], rows: list[list[str]], images: list[str]) -> str:
    pre = report["pretrain"]
    lines = [
        f"# hftk pipeline report: {report['output_dir']}",
        "",
        "Each task is fine-tuned identically from the pretrained model and, as the baseline, "
        "from a random initialisation of the same architecture and tokenizer.",
        "",
        "## Pretraining",
        "",
        f"eval loss {_fmt(pre['eval_loss'])}, perplexity {_fmt(pre['perplexity'])}, "
        f"{_fmt(pre['train_steps'])} steps, {_fmt(pre['tokens_seen'])} tokens, {_fmt(pre['num_parameters'])} parameters.",
        "",
        "## Main metrics",
        "",
        "| " + " | ".join(TABLE_HEADER) + " |",
        "|" + "---|" * len(TABLE_HEADER),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        "## All results",
        "",
        "| stage | metric | pretrained | baseline |",
        "|---|---|---|---|",
        *(f"| {r['stage']} | {r['metric']} | {_fmt(r['pretrained'])} | {_fmt(r['baseline'])} |" for r in report["results"]),
        "",
        "## Plots",
        "",
        *(f"![{Path(image).stem}]({image})" for image in images),
        "",
        "## Stage folders",
        "",
        *(f"- `{name}`: {stage['folder']}" for name, stage in report["stages"].items()),
        "",
    ]
    return "\n".join(lines)


def write_report(pipeline: LoadedPipeline) -> Path:
    """Write report.json, the plots and report.md into the pipeline's output folder; return report.md."""
    out = pipeline.output_dir
    report, stages = collect(pipeline)
    images = ["loss_curves.png"]
    plot_loss_curves(stages, out / "loss_curves.png")
    for name, recipe in pipeline.finetune.items():
        rows = [row for row in report["results"] if row["stage"] == name]
        if rows:
            plot_task_results(rows, f"{name} ({recipe.task})", out / f"results_{name}.png")
            images.append(f"results_{name}.png")
    rows = table_rows(report["results"])
    plot_table(rows, out / "results_table.png")
    images.append("results_table.png")
    write_json_atomic(out / "report.json", report)
    path = out / "report.md"
    path.write_text(markdown(report, rows, images), encoding="utf-8")
    return path
