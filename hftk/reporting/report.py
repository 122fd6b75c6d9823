"""The pipeline report: what the pretraining bought, in one page (`report.md`) and one file (`report.json`).

Everything is read back from the stage folders (`metrics.json`, `log_history.json`,
`recipe.yaml`), never from memory, so a report rebuilt after a re-run that skipped every
stage says exactly what the folders hold. Plots: `loss_curves.png` (every stage),
`results_<stage>.png` (every metric of a task, pretrained vs baseline), `results_chart.png`
(the main metric of every task, with the seed spread as error bars where there are seeds) and
`learning_curve_<stage>.png` for stages with a learning curve.

A difference is only called a gain when it clears the noise (`hftk.reporting.noise`): the seed spread
where there are several runs, a binomial standard error for proportion-like metrics.
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

from hftk.reporting import noise  # noqa: E402
from hftk.reporting.compression import compression_markdown, compression_rows  # noqa: E402
from hftk.reporting.stages import reported_metric  # noqa: E402
from hftk.errors import HftkError  # noqa: E402
from hftk.training.checkpoint import write_json_atomic  # noqa: E402

if TYPE_CHECKING:
    from hftk.recipe.pipeline import LoadedPipeline

# Bookkeeping counts and thresholds are not results; losses are plotted as curves instead.
NOT_RESULTS = ("loss", "perplexity", "total", "thresh", "samples")
# Except for encoder–decoder tasks, whose cross-entropy on the reference texts is listed too: at small
# budgets BLEU, chrF and ROUGE sit near zero for both inits and the loss is what tells them apart.
REFERENCE_LOSS_TASKS = ("translation", "summarization")
REFERENCE_LOSS_NOTE = (
    "`eval_loss` / `test_loss` of translation and summarization stages is the cross-entropy of the reference "
    "texts (lower is better), listed because BLEU, chrF and ROUGE stay near zero until a model writes the right words."
)


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
    """The task's result metrics (`eval_*` of the first eval split, then `test_*`), main metric first."""
    keys = [
        key
        for prefix in ("eval_", "test_")
        for key, value in metrics.items()
        if key.startswith(prefix) and isinstance(value, (int, float)) and not any(word in key for word in NOT_RESULTS)
    ]
    if main_metric in keys:
        keys.remove(main_metric)
        keys.insert(0, main_metric)
    return keys


def samples_for(metrics: dict[str, Any], key: str) -> int | None:
    """How many examples `key` was scored on (`eval_samples` / `test_samples`), if the run recorded it."""
    count = metrics.get(("test_" if key.startswith("test_") else "eval_") + "samples")
    return int(count) if isinstance(count, (int, float)) and count > 0 else None


def compare(pretrained: list[float], baseline: list[float], key: str, task: str, n: int | None) -> dict[str, Any]:
    """Means, spreads, difference and whether it clears the noise, for one metric of one task (one size)."""
    row: dict[str, Any] = {
        "pretrained": noise.mean(pretrained),
        "pretrained_std": noise.seed_spread(pretrained),
        "pretrained_runs": pretrained,
        "baseline": noise.mean(baseline) if baseline else None,
        "baseline_std": noise.seed_spread(baseline) if baseline else None,
        "baseline_runs": baseline,
        "n": n,
        "difference": None,
        "noise": None,
        "noise_source": None,
        "verdict": None,
    }
    if baseline:
        delta = row["pretrained"] - row["baseline"]
        level = noise.difference_noise(pretrained, baseline, key, task, n)
        row.update(difference=delta, noise=level.level, noise_source=level.source, verdict=noise.verdict(delta, level))
    return row


def _values(folders: list[Path], key: str) -> tuple[list[float], int | None]:
    """`key` from each finished run folder (runs without it skipped) and the evaluated-example count."""
    values, n = [], None
    for folder in folders:
        metrics_path = folder / "metrics.json"
        if not metrics_path.is_file():
            raise HftkError(f"run folder {folder} has no metrics.json: the run did not finish; run the pipeline again")
        metrics = json.loads(metrics_path.read_text())
        if isinstance(metrics.get(key), (int, float)):
            values.append(float(metrics[key]))
            n = n or samples_for(metrics, key)
    return values, n


def main_comparisons(pipeline: LoadedPipeline, stages: dict[str, dict]) -> list[dict[str, Any]]:
    """Per task, the main metric: pretrained vs baseline over every whole-training-set run (one, or one per seed)."""
    from hftk.recipe.pipeline import BASELINE_PREFIX

    rows = []
    for name, recipe in pipeline.finetune.items():
        stage = stages[name]
        key = reported_metric(stage["metrics"], stage["main_metric"])
        if key is None or key not in stage["metrics"]:
            continue
        points = [p for p in pipeline.curves.get(name, []) if p.size is None] or None
        pre_folders = [Path(p.pretrained.output.output_dir) for p in points] if points else [pipeline.stage_dir(name)]
        pretrained, n = _values(pre_folders, key)
        if not pretrained:
            continue
        baseline: list[float] = []
        if BASELINE_PREFIX + name in stages:
            base_folders = [Path(p.baseline.output.output_dir) for p in points] if points else [pipeline.stage_dir(BASELINE_PREFIX + name)]
            baseline, _ = _values(base_folders, key)
        rows.append({"stage": name, "task": recipe.task, "metric": key, **compare(pretrained, baseline, key, recipe.task, n)})
    return rows


def learning_curves(pipeline: LoadedPipeline, stages: dict[str, dict]) -> dict[str, dict[str, Any]]:
    """Per stage with a learning curve: the main metric's mean ± spread per training-set size."""
    curves = {}
    for name, points in pipeline.curves.items():
        stage = stages[name]
        key = reported_metric(stage["metrics"], stage["main_metric"])
        if key is None:
            continue
        task = pipeline.finetune[name].task
        rows = []
        for label in dict.fromkeys(p.label for p in points):
            group = [p for p in points if p.label == label]
            pretrained, n = _values([Path(p.pretrained.output.output_dir) for p in group], key)
            baseline: list[float] = []
            if all(p.baseline is not None for p in group):
                baseline, _ = _values([Path(p.baseline.output.output_dir) for p in group], key)
            if not pretrained:
                continue
            size = f"all ({group[0].examples})" if label == "all" and group[0].examples else label
            rows.append({"size": size, "seeds": [p.seed for p in group], **compare(pretrained, baseline, key, task, n)})
        curves[name] = {"task": task, "metric": key, "points": rows}
    return curves


def collect(pipeline: LoadedPipeline) -> tuple[dict[str, Any], dict[str, dict]]:
    """report.json's content: every stage's metrics, and per task the pretrained vs baseline rows."""
    from hftk.recipe.pipeline import BASELINE_PREFIX, PRETRAIN_STAGE
    from hftk.reporting.stages import trained_stages

    stages = {name: read_stage(pipeline.stage_dir(name)) for name in trained_stages(pipeline)}
    results = []
    for name, recipe in pipeline.finetune.items():
        stage = stages[name]
        baseline = stages.get(BASELINE_PREFIX + name)
        keys = result_keys(stage["metrics"], stage["main_metric"])
        if recipe.task in REFERENCE_LOSS_TASKS:
            keys += [key for key in ("eval_loss", "test_loss") if isinstance(stage["metrics"].get(key), (int, float))]
        for key in keys:
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
    main_rows = main_comparisons(pipeline, stages)
    main = {row["stage"]: row["metric"] for row in main_rows}
    for row in results:
        row["main"] = main.get(row["stage"]) == row["metric"]
    pretrain_metrics = stages[PRETRAIN_STAGE]["metrics"]
    return {
        "output_dir": str(pipeline.output_dir),
        "pretrain": {k: pretrain_metrics.get(k) for k in ("eval_loss", "perplexity", "train_steps", "tokens_seen", "num_parameters")},
        "stages": {name: {k: v for k, v in stage.items() if k != "log_history"} for name, stage in stages.items()},
        "results": results,
        "main": main_rows,
        "learning_curves": learning_curves(pipeline, stages),
        "compression": compression_rows(pipeline, stages),
    }, stages


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def _save(figure, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.png")
    if not figure.legends:  # a figure-level legend has laid itself out already
        figure.tight_layout()
    figure.savefig(tmp)
    plt.close(figure)
    tmp.replace(path)


def loss_panels(stages: dict[str, dict]) -> dict[str, dict[str, list[dict]]]:
    """Panel title -> {curve label -> log history}: pretraining alone, each task with its baseline."""
    from hftk.recipe.pipeline import BASELINE_PREFIX

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


def _spread(mean: float | None, std: float | None, runs: list[float]) -> str:
    """`0.8123` for one run, `0.8123 ± 0.0100 (3 seeds)` for several."""
    if mean is None:
        return "–"
    if std is None:
        return _fmt(mean)
    return f"{_fmt(mean)} ± {_fmt(std)} ({len(runs)} seeds)"


def _signed(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:+.4f}" if abs(value) < 10 else f"{value:+.2f}"


def table_rows(main: list[dict]) -> list[list[str]]:
    """Main metric per task: stage, task, metric, pretrained, baseline, difference, noise, verdict."""
    return [
        [
            row["stage"],
            row["task"],
            row["metric"],
            _spread(row["pretrained"], row["pretrained_std"], row["pretrained_runs"]),
            _spread(row["baseline"], row["baseline_std"], row["baseline_runs"]),
            _signed(row["difference"]),
            _noise_cell(row),
            row["verdict"] or "–",
        ]
        for row in main
    ]


def _noise_cell(row: dict) -> str:
    if row["noise"] is None:
        return "–"
    return f"±{_fmt(row['noise'])} ({row['noise_source']})"


TABLE_HEADER = ["stage", "task", "metric", "pretrained", "baseline", "pretrained − baseline", "noise", "verdict"]
CURVE_HEADER = ["training examples", "pretrained", "baseline", "pretrained − baseline", "noise", "verdict"]


def curve_rows(curve: dict[str, Any]) -> list[list[str]]:
    return [
        [
            point["size"],
            _spread(point["pretrained"], point["pretrained_std"], point["pretrained_runs"]),
            _spread(point["baseline"], point["baseline_std"], point["baseline_runs"]),
            _signed(point["difference"]),
            _noise_cell(point),
            point["verdict"] or "–",
        ]
        for point in curve["points"]
    ]


def _bars(axis, labels: list[str], rows: list[dict], prefix: str = "") -> None:
    """Pretrained and baseline bars side by side, error bars = seed spread where there are seeds."""
    has_baseline = any(row["baseline"] is not None for row in rows)
    width = 0.35 if has_baseline else 0.5
    shift = width / 2 if has_baseline else 0.0
    positions = range(len(rows))

    def errors(side: str) -> list[float] | None:  # no error bar at all for single runs
        spreads = [row[f"{side}_std"] for row in rows]
        return [s or 0.0 for s in spreads] if any(s is not None for s in spreads) else None

    style = {"capsize": 5, "error_kw": {"elinewidth": 1.2}}
    bars = axis.bar([p - shift for p in positions], [row["pretrained"] for row in rows], width, yerr=errors("pretrained"), label="pretrained", **style)
    axis.bar_label(bars, labels=[_fmt(row["pretrained"]) for row in rows], fontsize=7, padding=2)
    if has_baseline:
        values = [row["baseline"] if row["baseline"] is not None else 0.0 for row in rows]
        bars = axis.bar([p + shift for p in positions], values, width, yerr=errors("baseline"), label="baseline (random init)", **style)
        axis.bar_label(bars, labels=[_fmt(row["baseline"]) for row in rows], fontsize=7, padding=2)
    axis.set_xticks(list(positions), [prefix + label for label in labels])
    axis.set_xlim(-0.75, len(rows) - 0.25)
    axis.grid(axis="y", alpha=0.3)


def plot_main_chart(main: list[dict], path: Path) -> None:
    """One panel per task (metrics differ in scale): pretrained vs baseline on the main metric."""
    columns = max(1, min(3, len(main)))
    rows = max(1, math.ceil(len(main) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.4 * rows), dpi=100, squeeze=False)
    for axis, row in zip(axes.flat, main):
        _bars(axis, [""], [row])
        axis.set_xticks([])
        seeds = f", {len(row['pretrained_runs'])} seeds" if row["pretrained_std"] is not None else ""
        verdict = f"\n{row['verdict']}" if row["verdict"] else ""
        axis.set_title(f"{row['stage']} ({row['task']}{seeds}){verdict}", fontsize=9)
        axis.set_ylabel(row["metric"])
        scale = noise.proportion_scale(row["metric"], row["task"])
        if scale is not None:  # the whole 0..1 (0..100) range: a zoomed axis makes noise look like a gain
            axis.set_ylim(0, scale)
    for axis in list(axes.flat)[len(main) :]:
        axis.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, names, loc="lower center", ncol=2, fontsize=8)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    _save(figure, path)


def plot_learning_curve(name: str, curve: dict[str, Any], path: Path) -> None:
    """Main metric against training-set size: mean over seeds, the seed spread as error bars."""
    points = curve["points"]
    labels = [point["size"] for point in points]
    figure, axis = plt.subplots(figsize=(max(4.5, 1.0 * len(points) + 2.5), 3.5), dpi=100)
    positions = list(range(len(points)))  # evenly spaced: sizes are usually spread over decades, 'all' has no number
    for label, side in (("pretrained", "pretrained"), ("baseline (random init)", "baseline")):
        if any(point[side] is None for point in points):
            continue
        axis.errorbar(
            positions,
            [point[side] for point in points],
            yerr=[point[f"{side}_std"] or 0.0 for point in points],
            marker="o",
            capsize=4,
            label=label,
        )
    axis.set_xticks(positions, labels)
    axis.set_xlabel("training examples")
    axis.set_ylabel(curve["metric"])
    axis.set_title(f"{name} ({curve['task']}): learning curve")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    _save(figure, path)


NOISE_NOTE = (
    "A difference is called a gain only when it is larger than the noise: the larger of the seed spread "
    "(sample standard deviation over seeds, where there are several runs) and the binomial standard error "
    "of the difference for proportion-like metrics on n evaluated examples, sqrt(p1(1−p1)/n + p2(1−p2)/n) "
    "(F1 scores treated as a proportion over the n examples: an upper bound for QA's per-question F1, an "
    "approximation for entity F1). Inside it the verdict is \"within noise\"; \"not assessed\" means one run "
    "per side of a metric with no standard error. Scores are `test_*` (a test file scored once) where the "
    "stage has one, else `eval_*` (optimistic: the same file chose the checkpoint)."
)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(row) + " |" for row in rows)]


def markdown(report: dict[str, Any], rows: list[list[str]], images: list[str]) -> str:
    pre = report["pretrain"]
    curves = []
    for name, curve in report["learning_curves"].items():
        curves += [
            f"### {name} ({curve['task']}, {curve['metric']})",
            "",
            *_table(CURVE_HEADER, curve_rows(curve)),
            "",
            f"![learning_curve_{name}](learning_curve_{name}.png)",
            "",
        ]
    if curves:
        curves = [
            "## Learning curves",
            "",
            "Each size is fine-tuned once per seed from each initialisation; a smaller size draws its own "
            "random subset of the training file per seed. Mean ± sample standard deviation over the seeds.",
            "",
            *curves,
        ]
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
        *_table(TABLE_HEADER, rows),
        "",
        NOISE_NOTE,
        "",
        *curves,
        *compression_markdown(report.get("compression") or []),
        "## All results",
        "",
        "Every metric of each stage's own run (its first seed, whole training set).",
        "",
        *([REFERENCE_LOSS_NOTE, ""] if any(r["task"] in REFERENCE_LOSS_TASKS for r in report["results"]) else []),
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
    if report["main"]:
        plot_main_chart(report["main"], out / "results_chart.png")
        images.append("results_chart.png")
    for name, recipe in pipeline.finetune.items():
        rows = [row for row in report["results"] if row["stage"] == name]
        if rows:
            plot_task_results(rows, f"{name} ({recipe.task})", out / f"results_{name}.png")
            images.append(f"results_{name}.png")
    for name, curve in report["learning_curves"].items():
        plot_learning_curve(name, curve, out / f"learning_curve_{name}.png")
    write_json_atomic(out / "report.json", report)
    path = out / "report.md"
    path.write_text(markdown(report, table_rows(report["main"]), images), encoding="utf-8")
    return path
