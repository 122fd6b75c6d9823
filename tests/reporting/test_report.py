"""The pipeline report from hand-written stage folders: verdicts against the noise, seeds, learning curves, charts."""

import json
from pathlib import Path

import pytest
import yaml

from hftk.recipe.pipeline import load_pipeline
from hftk.reporting.report import write_report

PNG = b"\x89PNG\r\n\x1a\n"


def write_run(folder: Path, metrics: dict, main_metric: str = "eval_accuracy") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "recipe.yaml").write_text(yaml.safe_dump({"training": {"metric_for_best_model": main_metric}}))
    (folder / "log_history.json").write_text(json.dumps([{"step": 1, "loss": 1.0}, {"step": 2, "eval_loss": 0.9}]))


def pipeline_file(tmp_path: Path, curve: dict | None) -> Path:
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": f"text {i}", "label": i % 2}) + "\n" for i in range(50)))
    stage = {"name": "reviews", "task": "classification", "data": {"train_file": str(train), "validation_file": str(train)}}
    ner = {"name": "tags", "task": "ner", "data": {"train_file": str(train), "validation_file": str(train)}}
    if curve:
        stage["learning_curve"] = curve
    data = {"output_dir": str(tmp_path / "out"), "pretrain": {"recipe": "pretrain-default"}, "finetune": [stage, ner], "baseline": True}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_single_runs_are_judged_against_the_binomial_error(tmp_path):
    pipeline = load_pipeline(pipeline_file(tmp_path, None))
    out = pipeline.output_dir
    write_run(out / "pretrain", {"eval_loss": 5.0, "perplexity": 148.4, "train_steps": 10, "tokens_seen": 1000, "num_parameters": 7})
    # reviews: 0.80 vs 0.78 on 1000 examples -> SE of the difference 0.018228 < 0.02: a (small) lead
    write_run(out / "reviews", {"eval_accuracy": 0.80, "eval_samples": 1000})
    write_run(out / "baseline-reviews", {"eval_accuracy": 0.78, "eval_samples": 1000})
    # tags: the case, entity F1 0.0024 vs 0.0 on 128 sentences -> SE 0.011722: within noise;
    # the test file, scored once, is what the table reports
    write_run(out / "tags", {"eval_f1": 0.5, "eval_samples": 64, "test_f1": 0.0024, "test_samples": 128}, "eval_f1")
    write_run(out / "baseline-tags", {"eval_f1": 0.1, "eval_samples": 64, "test_f1": 0.0, "test_samples": 128}, "eval_f1")
    report_md = write_report(pipeline)

    report = json.loads((out / "report.json").read_text())
    main = {row["stage"]: row for row in report["main"]}
    assert main["reviews"]["metric"] == "eval_accuracy" and main["tags"]["metric"] == "test_f1"
    assert main["reviews"]["noise"] == pytest.approx(0.018228, abs=1e-6)
    assert main["reviews"]["verdict"] == "pretrained higher"
    assert main["tags"]["noise"] == pytest.approx(0.011722, abs=1e-6)
    assert main["tags"]["verdict"] == "within noise"
    assert {row["stage"]: row["metric"] for row in report["results"] if row["main"]} == {"reviews": "eval_accuracy", "tags": "test_f1"}
    assert not any("samples" in row["metric"] for row in report["results"])

    text = report_md.read_text()
    tags_line = next(line for line in text.splitlines() if line.startswith("| tags | ner | test_f1 |"))
    assert "| 0.0024 | 0.0000 | +0.0024 | ±0.0117 (binomial SE, n=128) | within noise |" in tags_line
    assert "| reviews | classification | eval_accuracy | 0.8000 | 0.7800 | +0.0200 | ±0.0182 (binomial SE, n=1000) | pretrained higher |" in text
    assert "within noise" in text and "results_table" not in text
    assert (out / "results_chart.png").read_bytes()[:8] == PNG and "](results_chart.png)" in text
    assert not (out / "results_table.png").exists()
    assert "## Learning curves" not in text


def test_learning_curve_seeds_give_means_spreads_and_error_bars(tmp_path):
    pipeline = load_pipeline(pipeline_file(tmp_path, {"sizes": [10, "all"], "seeds": 3}))
    points = pipeline.curves["reviews"]
    assert [(p.label, p.seed, p.main) for p in points] == [
        ("10", 42, False), ("10", 43, False), ("10", 44, False), ("all", 42, True), ("all", 43, False), ("all", 44, False)
    ]
    out = pipeline.output_dir
    assert Path(points[3].pretrained.output.output_dir) == out / "reviews"  # the stage itself is the first 'all' run
    assert Path(points[3].baseline.output.output_dir) == out / "baseline-reviews"
    assert Path(points[0].pretrained.output.output_dir) == out / "curves" / "reviews" / "n10-seed42"
    assert Path(points[0].baseline.output.output_dir) == out / "curves" / "baseline-reviews" / "n10-seed42"
    assert (points[1].pretrained.data.max_train_samples, points[1].pretrained.data.train_sample_seed) == (10, 43)
    assert points[1].pretrained.training.seed == 43 and points[1].baseline.model.name_or_path == str(out / "baseline-init")
    assert points[4].pretrained.data.max_train_samples is None and points[4].pretrained.data.train_sample_seed is None

    write_run(out / "pretrain", {"eval_loss": 5.0, "perplexity": 148.4, "train_steps": 10, "tokens_seen": 1000, "num_parameters": 7})
    write_run(out / "tags", {"eval_f1": 0.5, "eval_samples": 64}, "eval_f1")
    write_run(out / "baseline-tags", {"eval_f1": 0.1, "eval_samples": 64}, "eval_f1")
    values = {  # size -> (pretrained runs, baseline runs), 200 evaluated examples each
        "10": ([0.60, 0.70, 0.80], [0.50, 0.55, 0.60]),
        "all": ([0.80, 0.82, 0.84], [0.79, 0.80, 0.81]),
    }
    for point in points:
        index = [p.seed for p in points if p.label == point.label].index(point.seed)
        pre, base = values[point.label]
        write_run(Path(point.pretrained.output.output_dir), {"eval_accuracy": pre[index], "eval_samples": 200})
        write_run(Path(point.baseline.output.output_dir), {"eval_accuracy": base[index], "eval_samples": 200})
    text = write_report(pipeline).read_text()
    report = json.loads((out / "report.json").read_text())

    # 'all': means 0.82 vs 0.80, spreads 0.02 / 0.01; binomial SE on 200: sqrt((165*37 + 161*41)/202^2/200) = 0.03946
    reviews = next(row for row in report["main"] if row["stage"] == "reviews")
    assert reviews["pretrained"] == pytest.approx(0.82) and reviews["pretrained_std"] == pytest.approx(0.02)
    assert reviews["baseline"] == pytest.approx(0.80) and reviews["baseline_std"] == pytest.approx(0.01)
    assert reviews["noise"] == pytest.approx(((165 * 37 + 161 * 41) / 202**2 / 200) ** 0.5) and reviews["verdict"] == "within noise"
    assert "| reviews | classification | eval_accuracy | 0.8200 ± 0.0200 (3 seeds) | 0.8000 ± 0.0100 (3 seeds) | +0.0200 |" in text

    curve = report["learning_curves"]["reviews"]
    assert curve["metric"] == "eval_accuracy" and [p["size"] for p in curve["points"]] == ["10", "all (50)"]
    small = curve["points"][0]
    # 10 examples: 0.70 ± 0.10 vs 0.55 ± 0.05; the seed spread 0.10 beats the binomial SE 0.0479 and 0.15 clears it
    assert small["pretrained"] == pytest.approx(0.70) and small["pretrained_std"] == pytest.approx(0.10)
    assert small["baseline_std"] == pytest.approx(0.05)
    assert small["noise"] == pytest.approx(0.10) and small["noise_source"] == "seed spread"
    assert small["verdict"] == "pretrained higher"
    assert "| 10 | 0.7000 ± 0.1000 (3 seeds) | 0.5500 ± 0.0500 (3 seeds) | +0.1500 | ±0.1000 (seed spread) | pretrained higher |" in text
    assert "## Learning curves" in text and "](learning_curve_reviews.png)" in text
    assert (out / "learning_curve_reviews.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize(
    ("curve", "needle"),
    [
        ({"sizes": [10, 60], "seeds": 2}, "learning_curve size 60 is larger than the training set (50 examples)"),
        ({"sizes": [10], "seeds": 0}, "finetune.0.learning_curve.seeds: seeds must be at least 1"),
        ({"sizes": [0, 10]}, "sizes must be positive"),
        ({"sizes": []}, "finetune.0.learning_curve.sizes"),
        ({"sizes": [10, 10]}, "sizes must not repeat"),
    ],
)
def test_bad_learning_curves_are_one_line_errors(tmp_path, curve, needle):
    from hftk.errors import HftkError

    with pytest.raises(HftkError, match=needle.replace("(", r"\(").replace(")", r"\)")) as error:
        load_pipeline(pipeline_file(tmp_path, curve))
    assert "\n" not in str(error.value)


def test_learning_curve_keys_can_be_set_on_the_command_line(tmp_path):
    path = pipeline_file(tmp_path, {"sizes": [10, "all"], "seeds": 3})
    pipeline = load_pipeline(path, ["finetune.reviews.learning_curve.seeds=1", "finetune.reviews.training.seed=7"])
    assert [(p.label, p.seed) for p in pipeline.curves["reviews"]] == [("10", 7), ("all", 7)]
    assert load_pipeline(path, ["finetune.reviews.learning_curve=null"]).curves == {}
    from hftk.errors import HftkError

    with pytest.raises(HftkError, match="seeds must be at least 1"):
        load_pipeline(path, ["finetune.*.learning_curve.seeds=0"])
