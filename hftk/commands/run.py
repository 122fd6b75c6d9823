"""`hftk run PIPELINE.yaml`: pretrain, fine-tune every task on the result (and on a random twin), report.

One YAML file answers "does my pretraining help, and by how much?": the pretrained model
and a randomly initialised model of the same architecture and tokenizer (the baseline)
are fine-tuned identically on each task, and `report.md` puts the numbers side by side.

The pipeline file and its stage recipes are loaded and checked by `hftk.recipe.pipeline`;
this module runs the stages: a folder holding `metrics.json` is finished and skipped on a
re-run, an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from accelerate.state import AcceleratorState

from hftk.errors import HftkError
from hftk.recipe.pipeline import (
    BASELINE_INIT_STAGE,
    BASELINE_PREFIX,
    PRETRAIN_STAGE,
    LoadedPipeline,
    data_paths,
    with_model,
)
from hftk.reporting.stages import quantized_stage, trained_stages
from hftk.training.output_lock import locks_folder
from hftk.training.outputs import FINISHED_MARKER

Echo = Callable[[str], None]


def write_generated_data(pipeline: LoadedPipeline) -> None:
    """The `hftk-data:` files the stages read (hftk.data.austen_tasks), into the run folder before the first stage."""
    from hftk.data import austen_tasks

    for path, name in pipeline.generated.items():
        austen_tasks.write(name, Path(path).parents[1])


def check_pipeline_inputs(pipeline: LoadedPipeline) -> None:
    """Every stage's local data exists, and a push can happen, before the first stage starts."""
    for section, key, label in data_paths(pipeline.pretrain, pipeline.finetune.values()):
        value = getattr(section, key)
        for item in value if isinstance(value, list) else [value]:
            if item and "{" not in item and item not in pipeline.generated and not Path(item).exists():
                raise HftkError(
                    f"{label}: {item} does not exist (relative paths start from the current folder, {Path.cwd()}); "
                    "run from the folder the pipeline expects or fix the path with --set"
                )
    if pipeline.spec.push is not None:
        from hftk.hub import check_push_access

        check_push_access(f"{pipeline.spec.push.hub_model_id_prefix}-{PRETRAIN_STAGE}")


def stage_state(folder: Path) -> Literal["finished", "interrupted", "partial", "new"]:
    """finished: metrics.json; interrupted: a checkpoint to resume; partial: a folder with neither."""
    from hftk.training.checkpoint import latest_checkpoint

    if (folder / FINISHED_MARKER).is_file():
        return "finished"
    if latest_checkpoint(folder) is not None:
        return "interrupted"
    return "partial" if folder.exists() else "new"


def run_stage(name: str, recipe, run: Callable[..., Path], echo: Echo, overwrite: bool) -> None:
    """Run one stage unless finished; resume an interrupted one; restart a partial one."""
    folder = Path(recipe.output.output_dir)
    state = stage_state(folder)
    if overwrite and state != "new":
        state = "partial"  # start over
    if state == "finished":
        stale = "; its recipe.yaml differs from this pipeline's, --overwrite runs it again" if recipe_changed(folder, recipe) else ""
        echo(f"skipping finished stage {name} ({folder}){stale}")
        return
    recipe = recipe.model_copy(deep=True)
    recipe.output.overwrite = state == "partial"
    if state == "interrupted":
        echo(f"resuming stage {name} from its last checkpoint ({folder})")
    else:
        echo(f"running stage {name} -> {folder}")
    # Each stage builds its own Accelerator; stages may differ in mixed precision, which
    # Accelerate's process-wide state refuses to change. One process only (checked on load).
    AcceleratorState._reset_state()
    from hftk.errors import TrainingInterrupted

    try:
        run(recipe, resume=state == "interrupted")
    except TrainingInterrupted as interrupt:  # `hftk run` resumes interrupted stages by itself
        raise TrainingInterrupted(f"{str(interrupt).split(';')[0]} of stage {name}; rerun the same command to continue") from None


def _comparable(recipe: dict[str, Any]) -> dict[str, Any]:
    """A recipe without what the run itself fills in (folder options, the selection metric)."""
    recipe = {key: value for key, value in recipe.items() if key != "output"}
    training = dict(recipe.get("training") or {})
    for key in ("metric_for_best_model", "greater_is_better"):
        training.pop(key, None)
    return {**recipe, "training": training}


def recipe_changed(folder: Path, recipe) -> bool:
    """Did the finished stage run another recipe than the pipeline now asks for?"""
    import yaml

    saved = folder / "recipe.yaml"
    if not saved.is_file():
        return False
    old, new = yaml.safe_load(saved.read_text()) or {}, recipe.model_dump(mode="json")
    # Left null, the run derived these from the model (sequence lengths) or picked them by model
    # type (the learning rate, finetune.default_learning_rate): compare with what it recorded.
    for section, key in (("data", "max_seq_length"), ("data", "doc_stride"), ("training", "learning_rate")):
        if (new.get(section) or {}).get(key, 0) is None and key in (old.get(section) or {}):
            new[section][key] = old[section][key]
    return _comparable(old) != _comparable(new)


def write_random_twin(pretrained: Path, folder: Path, seed: int, objective: str, overwrite: bool, echo: Echo) -> None:
    """Save a randomly initialised model of the pretrained config, with the pretrained tokenizer."""
    import torch
    from transformers import AutoConfig

    from hftk.data.tokenizer import load_tokenizer
    from hftk.objectives import AUTO_CLASS_BY_OBJECTIVE
    from hftk.training.outputs import write_model_folder
    from hftk.training.checkpoint import write_json_atomic

    if (folder / FINISHED_MARKER).is_file() and not overwrite:
        echo(f"skipping finished stage {BASELINE_INIT_STAGE} ({folder})")
        return
    echo(f"running stage {BASELINE_INIT_STAGE} -> {folder} (random initialisation, seed {seed})")
    auto_class = AUTO_CLASS_BY_OBJECTIVE[objective]  # electra: a random discriminator, the class its pretrained twin has
    config = AutoConfig.from_pretrained(pretrained)
    torch.manual_seed(seed)
    model = auto_class.from_config(config)
    staging = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    write_model_folder(model, load_tokenizer(str(pretrained)), staging)
    write_json_atomic(staging / FINISHED_MARKER, {"seed": seed, "num_parameters": model.num_parameters()})
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)


def source_recipe(pipeline: LoadedPipeline, name: str):
    """The finetune or distill recipe of a stage (its task and evaluation data)."""
    return pipeline.finetune.get(name) or pipeline.distill[name]


def quantize_stage(pipeline: LoadedPipeline, name: str, echo: Echo, overwrite: bool) -> None:
    """`hftk quantize` of a stage's model into STAGE-int8, scored on the stage's evaluation (and test) data."""
    import json

    from hftk.commands.evaluate import evaluate
    from hftk.quantize import quantize_folder
    from hftk.recipe import FinetuneDataSection, FinetuneRecipe
    from hftk.training.checkpoint import write_json_atomic

    folder = pipeline.stage_dir(quantized_stage(name))
    if (folder / FINISHED_MARKER).is_file() and not overwrite:
        echo(f"skipping finished stage {quantized_stage(name)} ({folder})")
        return
    echo(f"running stage {quantized_stage(name)} -> {folder} (int8 of {name})")
    quantize_folder(pipeline.stage_dir(name), folder, overwrite=True, format="torchao")  # scored by the PyTorch evaluator
    source = source_recipe(pipeline, name)
    # generation: how translation/summarization/generation stages decode, the int8 copy alike
    fields = {key: getattr(source, key).model_dump(mode="json") for key in ("data", "training", "generation")}
    fields["data"] = {key: value for key, value in fields["data"].items() if key in FinetuneDataSection.model_fields}  # no unlabeled_files
    metrics: dict[str, Any] = {"source": name}
    splits = [("eval_", source.data.validation_file), ("test_", source.data.test_file)]
    for prefix, file in splits:
        if prefix == "test_" and not file:
            continue
        recipe = FinetuneRecipe.model_validate(
            {"task": source.task, **fields, "model": {"name_or_path": str(folder)}, "output": {"output_dir": str(folder / f"{prefix}evaluation")}}
        )
        recipe.data.train_file = None
        if prefix == "test_":
            recipe.data.validation_file, recipe.data.max_eval_samples = file, None
        recipe.training.mixed_precision = "no"  # int8 kernels run in fp32 around them
        AcceleratorState._reset_state()
        out = evaluate(recipe)
        scores = json.loads((out / FINISHED_MARKER).read_text())
        metrics.update({prefix + key.removeprefix("eval_"): value for key, value in scores.items()})
    write_json_atomic(folder / FINISHED_MARKER, metrics)


@locks_folder(lambda pipeline, **_: pipeline.output_dir)
def run_pipeline(pipeline: LoadedPipeline, *, overwrite: bool = False, echo: Echo = print) -> Path:
    """Run every stage (skipping finished ones), write the report, push if asked; return report.md."""
    from hftk.commands.finetune import finetune
    from hftk.commands.pretrain import pretrain
    from hftk.reporting.report import write_report
    from hftk.training.outputs import check_output_dir

    check_pipeline_inputs(pipeline)
    check_output_dir(pipeline.output_dir)
    pipeline.output_dir.mkdir(parents=True, exist_ok=True)
    write_generated_data(pipeline)
    pretrained = pipeline.stage_dir(PRETRAIN_STAGE)
    run_stage(PRETRAIN_STAGE, pipeline.pretrain, pretrain, echo, overwrite)
    for name, recipe in pipeline.finetune.items():
        run_stage(name, recipe, finetune, echo, overwrite)
    if pipeline.spec.baseline is not None:
        init = pipeline.stage_dir(BASELINE_INIT_STAGE)
        write_random_twin(pretrained, init, pipeline.spec.baseline.seed, pipeline.pretrain.objective, overwrite, echo)
        for name, recipe in pipeline.finetune.items():
            twin = with_model(recipe, init, pipeline.stage_dir(BASELINE_PREFIX + name))
            run_stage(BASELINE_PREFIX + name, twin, finetune, echo, overwrite)
    for points in pipeline.curves.values():
        for point in points:
            if point.main:
                continue  # the stage itself, run above
            run_stage(point.name, point.pretrained, finetune, echo, overwrite)
            if point.baseline is not None:
                run_stage(BASELINE_PREFIX + point.name, point.baseline, finetune, echo, overwrite)
    if pipeline.distill:
        from hftk.commands.distill import distill

        for name, recipe in pipeline.distill.items():
            run_stage(name, recipe, distill, echo, overwrite)
    for name in pipeline.spec.quantize:
        quantize_stage(pipeline, name, echo, overwrite)
    report = write_report(pipeline)
    if pipeline.spec.push is not None:
        push_all(pipeline, echo)
    return report


def push_all(pipeline: LoadedPipeline, echo: Echo) -> None:
    """Upload each trained model folder to `<prefix>-<stage>`."""
    from hftk.hub import push_folder

    push = pipeline.spec.push
    for name in trained_stages(pipeline):
        url = push_folder(pipeline.stage_dir(name), f"{push.hub_model_id_prefix}-{name}", private=push.private)
        echo(f"pushed {name} to {url}")
