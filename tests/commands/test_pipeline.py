"""`hftk run PIPELINE.yaml` end to end, as a user runs it: tiny model, tiny slices of the shared data."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

SHARED = Path(os.environ.get("HFTK_SHARED_DIR", Path(__file__).resolve().parents[2] / ".." / "shared")).resolve()
DATA = SHARED / "data"
STAGES = ["pretrain", "fine_foods", "cloze", "wnut16", "baseline-fine_foods", "baseline-cloze", "baseline-wnut16"]
FINETUNE_TRAINING = {
    "max_steps": 4,
    "num_train_epochs": None,
    "eval_steps": 2,
    "logging_steps": 1,
    "per_device_train_batch_size": 8,
    "num_threads": 1,
    "report_to": [],
}


def tiny_pipeline(tmp: Path) -> dict:
    corpus = tmp / "austen.txt"
    corpus.write_text("\n".join((DATA / "pretrain" / "austen.txt").read_text().splitlines()[:400]) + "\n")

    def files(folder: str) -> dict:
        return {"train_file": str(DATA / folder / "train.jsonl"), "validation_file": str(DATA / folder / "test.jsonl")}

    return {
        "output_dir": str(tmp / "out"),
        "pretrain": {
            "recipe": "pretrain-default",
            "set": ["training.max_steps=20"],
            "model": {"config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}},
            "tokenizer": {"vocab_size": 300},
            "data": {"train_files": [str(corpus)], "validation_split_percentage": 10},
            "training": {
                "per_device_train_batch_size": 8,
                "per_device_eval_batch_size": 8,
                "max_time_minutes": None,
                "eval_steps": 4,
                "logging_steps": 2,
                "save_steps": 4,
                "num_threads": 1,
                "report_to": [],
            },
        },
        "finetune": [
            {
                "name": "fine_foods",
                "task": "classification",
                "data": {**files("classification/fine_foods"), "max_train_samples": 64, "max_eval_samples": 32, "max_seq_length": 64},
                "training": dict(FINETUNE_TRAINING),
                "learning_curve": {"sizes": [16, "all"], "seeds": 2},
            },
            {
                "name": "cloze",
                "task": "qa",
                "set": ["data.version_2_with_negative=true"],
                "data": {**files("qa/brown_cloze"), "max_train_samples": 32, "max_eval_samples": 16, "doc_stride": 32, "max_seq_length": 128},
                "training": dict(FINETUNE_TRAINING),
            },
            {
                "name": "wnut16",
                "task": "ner",
                "data": {**files("ner/wnut16"), "max_train_samples": 64, "max_eval_samples": 32, "max_seq_length": 64},
                "training": dict(FINETUNE_TRAINING),
            },
        ],
        "baseline": {"seed": 3},
        # pretrain -> finetune -> distill -> quantize: a one-layer student of fine_foods, both int8
        "distill": [{"teacher": "fine_foods", "student": {"layers": [1]}, "training": {**FINETUNE_TRAINING, "max_steps": 2}}],
        "quantize": ["fine_foods", "fine_foods-student"],
    }


def run_hftk(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "hftk", *args], capture_output=True, text=True, env=env, timeout=300)


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    path = write_yaml(tmp / "pipeline.yaml", tiny_pipeline(tmp))
    result = run_hftk("run", str(path), "--set", "finetune.*.training.max_steps=3", "--set", "pretrain.training.max_steps=8")
    assert result.returncode == 0, result.stderr[-3000:]
    return path, tmp / "out", result


def metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def test_every_stage_runs_into_its_folder_with_set_overrides_applied(pipeline_run):
    _, out, result = pipeline_run
    for stage in [*STAGES, "baseline-init"]:
        assert f"running stage {stage} ->" in result.stdout
        assert (out / stage / "metrics.json").is_file(), stage
    assert metrics(out / "pretrain")["train_steps"] == 8  # --set pretrain.* beat the pipeline's own set
    for stage in STAGES[1:]:
        assert metrics(out / stage)["train_steps"] == 3  # --set finetune.*.* reached every stage
    for stage in ("fine_foods", "cloze", "wnut16"):
        recipe = yaml.safe_load((out / stage / "recipe.yaml").read_text())
        twin = yaml.safe_load((out / f"baseline-{stage}" / "recipe.yaml").read_text())
        assert recipe["model"]["name_or_path"] == str(out / "pretrain")
        assert twin["model"]["name_or_path"] == str(out / "baseline-init")
        assert recipe["data"] == twin["data"] and recipe["training"] == twin["training"]


def test_baseline_is_a_seeded_random_twin_of_the_pretrained_model(pipeline_run):
    from transformers import AutoConfig, AutoModelForMaskedLM

    import hftk  # noqa: F401  (registers hftk_bert)

    _, out, _ = pipeline_run
    pretrained, init = out / "pretrain", out / "baseline-init"
    assert json.loads((init / "config.json").read_text())["hidden_size"] == 32
    assert (init / "tokenizer.json").read_text() == (pretrained / "tokenizer.json").read_text()
    torch.manual_seed(3)
    reference = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(pretrained)).state_dict()
    saved, trained = load_file(init / "model.safetensors"), load_file(pretrained / "model.safetensors")
    for name, tensor in saved.items():
        torch.testing.assert_close(tensor, reference[name], rtol=0, atol=0)
    embeddings = next(name for name in saved if "word_embeddings" in name)
    assert not torch.allclose(saved[embeddings], trained[embeddings])


def test_report_holds_the_stage_metrics_and_plots(pipeline_run):
    _, out, _ = pipeline_run
    report = json.loads((out / "report.json").read_text())
    for stage in STAGES:
        assert report["stages"][stage]["metrics"] == metrics(out / stage)
    assert report["pretrain"]["eval_loss"] == metrics(out / "pretrain")["eval_loss"]
    main = {row["stage"]: row for row in report["results"] if row["main"]}
    assert {stage: row["metric"] for stage, row in main.items()} == {"fine_foods": "eval_accuracy", "cloze": "eval_f1", "wnut16": "eval_f1"}
    markdown = (out / "report.md").read_text()
    for stage, row in main.items():
        pretrained, baseline = metrics(out / stage)[row["metric"]], metrics(out / f"baseline-{stage}")[row["metric"]]
        assert (row["pretrained"], row["baseline"]) == (pretrained, baseline)
        line = next(line for line in markdown.splitlines() if line.startswith(f"| {stage} | {row['task']} | {row['metric']} |"))
        if stage == "fine_foods":  # a learning curve with 2 seeds at the whole set: the table shows their mean
            continue
        digits = 4 if abs(pretrained) < 10 else 2
        assert f"| {pretrained:.{digits}f} |" in line and f"{pretrained - baseline:+.{digits}f}" in line
        # one run per side: judged against the binomial standard error on the evaluated examples
        n = int(metrics(out / stage)["eval_samples"])
        assert n == {"cloze": 16, "wnut16": 32}[stage]
        assert f"(binomial SE, n={n}) |" in line and line.rstrip(" |").endswith(("within noise", "pretrained higher", "baseline higher"))
    for image in ("loss_curves.png", "results_fine_foods.png", "results_cloze.png", "results_wnut16.png", "results_chart.png"):
        assert (out / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", image
        assert f"]({image})" in markdown


CURVE_RUNS = ["n16-seed42", "n16-seed43", "nall-seed43"]  # nall-seed42 is the fine_foods stage itself


def test_learning_curve_runs_every_size_and_seed_on_both_inits_and_reports_mean_and_spread(pipeline_run):
    _, out, result = pipeline_run
    curves = out / "curves"
    assert sorted(p.name for p in (curves / "fine_foods").iterdir()) == sorted(CURVE_RUNS)
    for run in CURVE_RUNS:
        for side, init in (("fine_foods", "pretrain"), ("baseline-fine_foods", "baseline-init")):
            assert f"running stage {'baseline-' if side.startswith('baseline') else ''}fine_foods/{run} ->" in result.stdout
            recipe = yaml.safe_load((curves / side / run / "recipe.yaml").read_text())
            seed = int(run.rsplit("seed", 1)[1])
            assert recipe["model"]["name_or_path"] == str(out / init) and recipe["training"]["seed"] == seed
            small = run.startswith("n16")
            assert recipe["data"]["max_train_samples"] == (16 if small else 64)
            assert recipe["data"]["train_sample_seed"] == (seed if small else None)
            assert metrics(curves / side / run)["train_steps"] == 3
    report = json.loads((out / "report.json").read_text())
    curve = report["learning_curves"]["fine_foods"]
    assert [point["size"] for point in curve["points"]] == ["16", "all (64)"]
    folders = {"16": ["n16-seed42", "n16-seed43"], "all (64)": [None, "nall-seed43"]}
    for point in curve["points"]:
        for side, main in (("pretrained", "fine_foods"), ("baseline", "baseline-fine_foods")):
            runs = [metrics(out / main if run is None else curves / main / run)["eval_accuracy"] for run in folders[point["size"]]]
            assert point[f"{side}_runs"] == runs
            assert point[side] == pytest.approx(sum(runs) / 2)
            assert point[f"{side}_std"] == pytest.approx(abs(runs[0] - runs[1]) / 2**0.5)
        assert point["n"] == 32 and point["verdict"] is not None
    main = next(row for row in report["main"] if row["stage"] == "fine_foods")
    assert main["pretrained_runs"] == curve["points"][1]["pretrained_runs"]
    markdown = (out / "report.md").read_text()
    assert "## Learning curves" in markdown and "(2 seeds)" in markdown
    assert (out / "learning_curve_fine_foods.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_second_run_skips_finished_stages_resumes_an_interrupted_one_and_restarts_a_partial_one(pipeline_run):
    path, out, _ = pipeline_run
    args = ("run", str(path), "--set", "finetune.*.training.max_steps=3", "--set", "pretrain.training.max_steps=8")
    before = {stage: (out / stage / "model.safetensors").stat().st_mtime_ns for stage in STAGES}
    again = run_hftk(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    for stage in [*STAGES, "baseline-init"]:
        assert f"skipping finished stage {stage}" in again.stdout
    assert "running stage" not in again.stdout and "differs" not in again.stdout
    assert before == {stage: (out / stage / "model.safetensors").stat().st_mtime_ns for stage in STAGES}

    from hftk.recipe.pipeline import load_pipeline
    from hftk.commands.run import recipe_changed

    sets = ["finetune.*.training.max_steps=3", "pretrain.training.max_steps=8"]
    assert not recipe_changed(out / "fine_foods", load_pipeline(path, sets).finetune["fine_foods"])
    changed = load_pipeline(path, [*sets, "finetune.fine_foods.training.learning_rate=1e-3"]).finetune
    assert recipe_changed(out / "fine_foods", changed["fine_foods"]) and not recipe_changed(out / "cloze", changed["cloze"])

    finished = {stage: metrics(out / stage) for stage in ("wnut16", "fine_foods")}
    for stage in finished:  # as if killed before the end (a finished fine-tuning run keeps no checkpoint)
        (out / stage / "metrics.json").unlink()
        assert not (out / stage / "checkpoints").exists()
    # Ctrl-C in the first of them (fine_foods): a checkpoint, and the pipeline's own way to go on.
    stopped = run_hftk(*args, env={"HFTK_FAULT": "step:1", "HFTK_FAULT_SIGNAL": "INT"})
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert stopped.stderr.strip().splitlines()[-1] == "stopped at step 2 of stage fine_foods; rerun the same command to continue"
    assert (out / "fine_foods" / "checkpoints" / "step-2").is_dir()
    third = run_hftk(*args)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "resuming stage fine_foods from its last checkpoint" in third.stdout
    assert "running stage wnut16 ->" in third.stdout and third.stdout.count("running stage") == 1
    for stage, before_metrics in finished.items():
        after = metrics(out / stage)
        for key in ("eval_loss", "train_loss", "train_steps", "tokens_seen"):
            assert after[key] == pytest.approx(before_metrics[key], rel=1e-5), (stage, key)


def test_a_bad_pipeline_key_is_one_line_and_exit_2(tmp_path):
    data = tiny_pipeline(tmp_path)
    data["ouput_dir"] = "x"
    result = run_hftk("run", str(write_yaml(tmp_path / "bad.yaml", data)))
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "unknown recipe key ouput_dir" in lines[0], result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("change", "overrides", "needle"),
    [
        (lambda p: p["finetune"][0].update(epochs=3), [], "finetune.0.epochs"),
        (lambda p: p["finetune"][1]["training"].update(learning_rat=1), [], "stage cloze: unknown recipe key training.learning_rat"),
        (lambda p: p["finetune"].append(dict(p["finetune"][0])), [], "repeated: fine_foods"),
        (lambda p: p["finetune"][0].update(name="baseline-x"), [], "finetune.0.name"),
        (lambda p: p["pretrain"].update(output={"output_dir": "x"}), [], "pretrain.output"),
        (lambda p: p["finetune"][2]["data"].update(max_seq_length=4), [], "stage wnut16: recipe key data.max_seq_length"),
        (lambda p: None, ["finetune.squad.training.max_steps=1"], "no finetune stage 'squad'"),
        (lambda p: None, ["pretrain.model.config.hiden_size=8"], "model.config.hiden_size"),
        (lambda p: p["distill"][0].update(teacher="squad"), [], "teacher 'squad' is not a finetune stage"),
        (lambda p: p.update(quantize=["nope"]), [], "quantize: 'nope' is not a finetune or distill stage"),
        (lambda p: None, ["distill.fine_foods-student.distill.alfa=1"], "stage fine_foods-student: unknown recipe key distill.alfa"),
    ],
)
def test_bad_pipelines_fail_on_load_naming_the_key(tmp_path, change, overrides, needle):
    from hftk.errors import HftkError
    from hftk.recipe.pipeline import load_pipeline

    data = tiny_pipeline(tmp_path)
    change(data)
    with pytest.raises(HftkError, match=re.escape(needle)) as error:
        load_pipeline(write_yaml(tmp_path / "bad.yaml", data), overrides)
    assert "\n" not in str(error.value)


def test_pipeline_shared_validates_and_points_at_the_shared_data(monkeypatch):
    from hftk.recipe.pipeline import load_pipeline

    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # its paths are relative to the repository root
    pipeline = load_pipeline("pipeline-shared")
    assert pipeline.spec.baseline is not None and set(pipeline.finetune) == {"fine_foods", "brown_cloze", "wnut16"}
    assert {recipe.task for recipe in pipeline.finetune.values()} == {"classification", "qa", "ner"}
    assert pipeline.finetune["brown_cloze"].data.version_2_with_negative
    files = [*pipeline.pretrain.data.train_files]
    files += [path for recipe in pipeline.finetune.values() for path in (recipe.data.train_file, recipe.data.validation_file)]
    for path in files:
        assert Path(path).exists() and Path(path).resolve().is_relative_to(SHARED), path
    for recipe in pipeline.finetune.values():  # QA/NER windows must fit the pretrained positions
        assert (recipe.data.max_seq_length or 0) <= pipeline.pretrain.model.config.get("max_position_embeddings", 128)


def test_pipeline_tiny_needs_nothing_but_the_package(tmp_path, monkeypatch):
    """A fresh install has no ../shared: the smoke test's data is generated into its own run folder."""
    from hftk.commands.run import check_pipeline_inputs, write_generated_data
    from hftk.recipe.pipeline import GENERATED_DATA_DIR, load_pipeline
    from hftk.data import austen_tasks

    monkeypatch.chdir(tmp_path)
    pipeline = load_pipeline("pipeline-tiny", [f"output_dir={tmp_path / 'out'}"])
    assert {recipe.task for recipe in pipeline.finetune.values()} == {"classification", "qa", "ner"}
    assert pipeline.pretrain.data.train_files == [] and pipeline.pretrain.data.dataset_name is None  # the shipped corpus
    data = tmp_path / "out" / GENERATED_DATA_DIR
    recipes = [*pipeline.finetune.values(), *pipeline.distill.values()]
    paths = [getattr(recipe.data, key) for recipe in recipes for key in ("train_file", "validation_file")]
    assert paths and all(Path(path).is_relative_to(data) for path in paths), paths
    assert not (tmp_path / "out").exists()  # loading writes nothing
    check_pipeline_inputs(pipeline)  # the files to be generated count as present
    # The learning curve's sizes fit the generated training set (after max_train_samples).
    curve = pipeline.curves["novels"]
    assert [point.examples for point in curve] == [64, 256]
    write_generated_data(pipeline)
    for path, name in pipeline.generated.items():
        rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
        assert rows == austen_tasks.rows(name)
    novels = pipeline.finetune["novels"].data
    assert len(Path(novels.train_file).read_text().splitlines()) >= novels.max_train_samples


def test_push_uploads_every_trained_stage_under_the_prefix(pipeline_run, monkeypatch):
    import hftk.hub
    from hftk.recipe.pipeline import load_pipeline
    from hftk.commands.run import push_all

    path, out, _ = pipeline_run
    calls = []
    monkeypatch.setattr(hftk.hub, "push_folder", lambda folder, repo_id, private: calls.append((folder, repo_id, private)) or repo_id)
    pipeline = load_pipeline(path, ["push.hub_model_id_prefix=me/tiny", "push.private=true"])
    push_all(pipeline, echo=lambda line: None)
    assert calls == [(out / stage, f"me/tiny-{stage}", True) for stage in [*STAGES, "fine_foods-student"]]


def test_distill_and_quantize_stages_and_the_report_rows(pipeline_run):
    """The student learns from the fine_foods stage on its data; int8 copies are scored; the report lists all four."""
    _, out, result = pipeline_run
    student, recipe = out / "fine_foods-student", yaml.safe_load((out / "fine_foods-student" / "recipe.yaml").read_text())
    assert "running stage fine_foods-student ->" in result.stdout
    assert recipe["teacher"]["name_or_path"] == str(out / "fine_foods") and recipe["student"]["layers"] == [1]
    assert recipe["data"]["train_file"] == str(DATA / "classification/fine_foods/train.jsonl") and recipe["data"]["max_train_samples"] == 64
    assert metrics(student)["train_steps"] == 2 and json.loads((student / "config.json").read_text())["num_hidden_layers"] == 1
    report = json.loads((out / "report.json").read_text())
    rows = report["compression"]
    assert [(r["model"], r["stage"]) for r in rows] == [
        ("teacher fp32", "fine_foods"), ("teacher int8", "fine_foods-int8"),
        ("student fp32", "fine_foods-student"), ("student int8", "fine_foods-student-int8"),
    ]
    from transformers import AutoModelForSequenceClassification

    for row in rows:
        folder = out / row["stage"]
        assert row["metric"] == "eval_accuracy" and row["value"] == metrics(folder)["eval_accuracy"]
        assert metrics(folder)["eval_samples"] == 32
        if row["model"].endswith("int8"):  # `hftk quantize --format torchao`: from_pretrained loads it
            assert json.loads((folder / "config.json").read_text())["quantization_config"]["quant_method"] == "torchao"
            assert row["weights_bytes"] == (folder / "model.safetensors").stat().st_size
            assert type(AutoModelForSequenceClassification.from_pretrained(folder)).__name__.endswith("ForSequenceClassification")
    assert rows[0]["parameters"] > rows[2]["parameters"] and rows[2]["share_of_teacher"] == rows[2]["value"] / rows[0]["value"]
    markdown = (out / "report.md").read_text()
    assert "## Distillation and int8" in markdown
    assert any(line.startswith("| fine_foods | student int8 | fine_foods-student-int8 | 1 | eval_accuracy |") for line in markdown.splitlines())


def test_shipped_pipeline_finds_its_data_from_another_folder_and_a_missing_file_fails_before_any_stage(tmp_path, monkeypatch):
    from hftk.errors import HftkError
    from hftk.recipe.pipeline import load_pipeline
    from hftk.commands.run import check_pipeline_inputs, run_pipeline

    monkeypatch.chdir(tmp_path)  # not the repository root: ../shared is not beside the current folder
    pipeline = load_pipeline("pipeline-shared")
    for recipe in pipeline.finetune.values():
        for path in (recipe.data.train_file, recipe.data.validation_file):
            assert Path(path).is_absolute() and Path(path).is_file() and Path(path).resolve().is_relative_to(SHARED), path
    check_pipeline_inputs(pipeline)
    broken = load_pipeline("pipeline-shared", ["finetune.wnut16.data.validation_file=missing/test.jsonl", f"output_dir={tmp_path / 'out'}"])
    with pytest.raises(HftkError, match=r"finetune stage wnut16: data.validation_file: missing/test.jsonl does not exist") as error:
        run_pipeline(broken, echo=lambda line: None)
    assert "\n" not in str(error.value) and str(tmp_path) in str(error.value)
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written


def test_a_learning_rate_left_to_the_model_is_not_a_changed_recipe(tmp_path):
    """A finished stage records the rate the run picked; the pipeline's null (by model) must match it."""
    from hftk.commands.run import recipe_changed
    from hftk.recipe import FinetuneRecipe, dump_recipe, load_recipe

    recipe = load_recipe(FinetuneRecipe, "finetune-classification")
    assert recipe.training.learning_rate is None
    ran = recipe.model_copy(deep=True)
    ran.training.learning_rate = 3e-4  # what `hftk finetune` resolved for an hftk encoder
    (tmp_path / "recipe.yaml").write_text(dump_recipe(ran))
    assert not recipe_changed(tmp_path, recipe)
    assert recipe_changed(tmp_path, load_recipe(FinetuneRecipe, "finetune-classification", ["training.learning_rate=1e-3"]))
    assert recipe_changed(tmp_path, load_recipe(FinetuneRecipe, "finetune-classification", ["training.num_train_epochs=5"]))
