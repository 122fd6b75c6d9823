"""The `hftk` command line (Typer).

Every command turns user mistakes into one line on stderr and exit code 2; `--debug` shows
the traceback instead. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from hftk.errors import HftkError, TrainingInterrupted

app = typer.Typer(
    name="hftk",
    help="Pretrain your own Transformers, fine-tune and evaluate them, share them on the Hugging Face Hub.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain click help: flags are shown as flags (the rich renderer labels them `<bool>`, which
    # reads as "takes a value"), and `--help` does not import rich.
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},
)
recipes_app = typer.Typer(
    help="List and show the recipes that ship with hftk.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(recipes_app, name="recipes")

DEBUG = {"enabled": False}

SetOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--set", "-s", metavar="KEY=VALUE", help="Override a recipe key, e.g. --set training.learning_rate=3e-4 (repeatable)."
    ),
]
OutputDirOption = Annotated[Optional[Path], typer.Option("--output-dir", "-o", metavar="DIR", help="Where the run folder goes.")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace a finished run in the output folder.")]
ResumeOption = Annotated[
    bool, typer.Option("--resume", help="Continue from the newest complete checkpoint in the output folder.")
]
PushOption = Annotated[bool, typer.Option("--push-to-hub", help="Upload the result to the Hub when training ends.")]
HubIdOption = Annotated[Optional[str], typer.Option("--hub-model-id", metavar="OWNER/NAME", help="Hub repository, OWNER/NAME.")]


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False,
) -> None:
    DEBUG["enabled"] = debug


def _output_overrides(output_dir: Path | None, overwrite: bool, push: bool, hub_model_id: str | None) -> list[str]:
    overrides = []
    if output_dir is not None:
        overrides.append(f"output.output_dir={output_dir}")
    if overwrite:
        overrides.append("output.overwrite=true")
    if push or hub_model_id:
        overrides.append("output.push_to_hub=true")
    if hub_model_id:
        overrides.append(f"output.hub_model_id={hub_model_id}")
    return overrides


@app.command()
def pretrain(
    recipe: Annotated[
        Optional[str], typer.Argument(help="Recipe YAML file or shipped recipe name (default: pretrain-default).")
    ] = None,
    set_: SetOption = None,
    output_dir: OutputDirOption = None,
    resume: ResumeOption = False,
    overwrite: OverwriteOption = False,
    push_to_hub: PushOption = False,
    hub_model_id: HubIdOption = None,
) -> None:
    """Pretrain an hftk model from raw text: tokenizer, packing, Accelerate loop, checkpoints.

    With no RECIPE it trains a small BERT-style encoder on the Jane Austen novels that ship
    with hftk: a fixed budget of 500 steps, so the same model on any machine (about 9 minutes
    on an idle 2-core CPU). Runs under `accelerate launch` too.

    Budgets: with a step budget (training.max_steps / num_train_epochs / max_tokens) the
    learning-rate schedule follows the steps; training.max_time_minutes beside it only stops
    a slow run early and says so. Ctrl-C writes a checkpoint; continue with --resume.
    """
    from hftk.recipe import PretrainRecipe, load_recipe

    overrides = [*(set_ or []), *_output_overrides(output_dir, overwrite, push_to_hub, hub_model_id)]
    loaded = load_recipe(PretrainRecipe, recipe or "pretrain-default", overrides)
    _check_push(loaded.output)
    from hftk.commands.pretrain import pretrain as run_pretrain  # torch & co. only once the recipe is known good

    folder = run_pretrain(loaded, resume=resume)
    _maybe_push(folder, loaded.output)
    typer.echo(f"Model saved to {folder}")


def _check_push(output) -> None:
    if output.push_to_hub:  # the Hub client is imported only when a push is asked for
        from hftk.commands.push import check_push

        check_push(output)


def _maybe_push(folder: Path, output) -> None:
    if output.push_to_hub:
        from hftk.commands.push import push_finished_run

        url = push_finished_run(folder, output)
        if url:
            typer.echo(f"Pushed to {url}")


def _finetune_recipe(task: str, recipe: str | None, model: str | None, glue_task: str | None, overrides: list[str]):
    from hftk.recipe import FinetuneRecipe, load_recipe
    from hftk.recipe.tasks import TASK_NAMES

    if task not in TASK_NAMES:
        raise HftkError(f"unknown task {task!r}: choose one of {', '.join(TASK_NAMES)}")
    extra = [f"task={task}"]
    if model:
        extra.append(f"model.name_or_path={json.dumps(model)}")  # quoted: a path is a string even if YAML would read it otherwise
    if glue_task:
        extra.append(f"data.glue_task={glue_task}")
    return load_recipe(FinetuneRecipe, recipe or f"finetune-{task}", [*extra, *overrides])


@app.command()
def finetune(
    task: Annotated[str, typer.Argument(help="glue, classification, qa, ner, generation, translation or summarization.")],
    recipe: Annotated[Optional[str], typer.Option("--recipe", "-r", help="Recipe YAML (default: finetune-TASK).")] = None,
    model: Annotated[
        Optional[str],
        typer.Option(
            "--model", "-m", metavar="FOLDER|HUB_ID|new|random:FOLDER",
            help="What to start from: a model folder or Hub id; `new` (or new:TYPE): a fresh model from the recipe's "
            "model.new section, its tokenizer trained on the training data; `random:FOLDER`: FOLDER's random-init twin "
            "(its config and tokenizer, fresh weights).",
        ),
    ] = None,
    glue_task: Annotated[
        Optional[str], typer.Option("--task", "-t", help="GLUE task: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli or all.")
    ] = None,
    set_: SetOption = None,
    output_dir: OutputDirOption = None,
    resume: ResumeOption = False,
    overwrite: OverwriteOption = False,
    push_to_hub: PushOption = False,
    hub_model_id: HubIdOption = None,
) -> None:
    """Fine-tune a model (hftk's or any transformers checkpoint) on a task and evaluate it.

    Data comes from the Hub (data.dataset_name) or local files in the Hub's column layout
    (--set data.train_file=... data.validation_file=...). LoRA: --set lora.r=8.
    `hftk finetune glue --task all` runs the nine GLUE tasks and writes a GLUE table.

    From scratch: --model new builds the recipe's model.new (every shipped recipe has sizes for
    it; --set model.new.config.hidden_size=512 changes them) and trains its tokenizer on the
    training data; both are saved with the run, and the same data and seed give the same model.
    --model random:FOLDER fine-tunes FOLDER's random-init twin, the baseline for pretraining.
    """
    overrides = [*(set_ or []), *_output_overrides(output_dir, overwrite, push_to_hub, hub_model_id)]
    if task == "glue" and glue_task == "all":
        from hftk.commands.glue_benchmark import run_glue_benchmark

        table = run_glue_benchmark(lambda name: _finetune_recipe(task, recipe, model, name, overrides), resume=resume)
        typer.echo(table)
        return
    loaded = _finetune_recipe(task, recipe, model, glue_task, overrides)
    _check_push(loaded.output)
    from hftk.commands.finetune import finetune as run_finetune  # torch & co. only once the recipe is known good

    folder = run_finetune(loaded, resume=resume)
    _maybe_push(folder, loaded.output)
    typer.echo(f"Model saved to {folder}")


@app.command()
def distill(
    task: Annotated[str, typer.Argument(help="glue, classification, qa or ner.")],
    teacher: Annotated[Optional[str], typer.Option("--teacher", help="Teacher folder, fine-tuned on TASK.")] = None,
    recipe: Annotated[Optional[str], typer.Option("--recipe", "-r", help="Recipe YAML (default: distill-classification).")] = None,
    glue_task: Annotated[Optional[str], typer.Option("--task", "-t", help="GLUE task name.")] = None,
    set_: SetOption = None,
    output_dir: OutputDirOption = None,
    resume: ResumeOption = False,
    overwrite: OverwriteOption = False,
    push_to_hub: PushOption = False,
    hub_model_id: HubIdOption = None,
) -> None:
    """Distil a fine-tuned teacher into a smaller student: same data options and outputs as finetune.

    Student: --set 'student.layers=[0,2,4]' (teacher layers), student.name_or_path=FOLDER or
    student.config.KEY=VALUE (fresh hftk_bert). Loss: distill.alpha, distill.temperature, distill.hidden_weight.
    """
    from hftk.commands.distill import distill as run_distill
    from hftk.recipe import load_recipe
    from hftk.recipe.distill import DistillRecipe

    from hftk.recipe.tasks import DISTILL_TASKS

    if task not in DISTILL_TASKS:
        raise HftkError(f"unknown task {task!r} for distill: choose one of {', '.join(DISTILL_TASKS)}")
    extra = [f"task={task}", *([f"teacher.name_or_path={teacher}"] if teacher else []), *([f"data.glue_task={glue_task}"] if glue_task else [])]
    overrides = [*extra, *(set_ or []), *_output_overrides(output_dir, overwrite, push_to_hub, hub_model_id)]
    loaded = load_recipe(DistillRecipe, recipe or "distill-classification", overrides)
    folder = run_distill(loaded, resume=resume)
    _maybe_push(folder, loaded.output)
    typer.echo(f"Model saved to {folder}")


@app.command()
def evaluate(
    task: Annotated[str, typer.Argument(help="glue, classification, qa, ner, generation, translation or summarization.")],
    model: Annotated[str, typer.Option("--model", "-m", help="The fine-tuned model folder to evaluate.")],
    recipe: Annotated[Optional[str], typer.Option("--recipe", "-r", help="Recipe YAML (default: finetune-TASK).")] = None,
    glue_task: Annotated[Optional[str], typer.Option("--task", "-t", help="GLUE task name.")] = None,
    set_: SetOption = None,
    output_dir: OutputDirOption = None,
) -> None:
    """Evaluate a saved model on a task's evaluation data; writes metrics.json and predictions.jsonl."""
    overrides = [*(set_ or []), *_output_overrides(output_dir or Path(model) / "evaluation", False, False, None)]
    loaded = _finetune_recipe(task, recipe, model, glue_task, overrides)
    from hftk.commands.evaluate import evaluate as run_evaluate  # torch & co. only once the recipe is known good

    folder = run_evaluate(loaded)
    typer.echo(f"Metrics written to {folder / 'metrics.json'}")


@app.command("run")
def run_pipeline_command(
    pipeline: Annotated[str, typer.Argument(help="Pipeline YAML file, or a shipped one: pipeline-shared, pipeline-tiny, pipeline-seq2seq.")],
    set_: Annotated[
        Optional[list[str]],
        typer.Option(
            "--set", "-s", metavar="KEY=VALUE", help="Override a key: output_dir=..., pretrain.training.max_steps=..., finetune.NAME.KEY=..., 'finetune.*.KEY=...' (repeatable)."
        ),
    ] = None,
    output_dir: Annotated[
        Optional[Path], typer.Option("--output-dir", "-o", metavar="DIR", help="Where the stage folders and report go (= --set output_dir=...).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Run every stage again, even finished ones.")] = False,
) -> None:
    """Pretrain, fine-tune every task (and a random-init baseline), then write report.md with plots.

    Finished stages are skipped on a re-run; an interrupted stage resumes from its checkpoint.
    Every stage's recipe and data files are checked before the first stage starts.
    """
    from hftk.commands.run import run_pipeline
    from hftk.recipe.pipeline import load_pipeline

    overrides = [*(set_ or []), *([f"output_dir={output_dir}"] if output_dir is not None else [])]
    run_pipeline(load_pipeline(pipeline, overrides), overwrite=overwrite, echo=typer.echo)


@recipes_app.command("list")
def recipes_list() -> None:
    """List the shipped recipes with the first line of their description."""
    from hftk.commands.recipes import recipe_summaries

    for line in recipe_summaries():
        typer.echo(line)


@recipes_app.command("show")
def recipes_show(
    name: Annotated[str, typer.Argument(help="Recipe name or YAML path.")],
    resolved: Annotated[
        bool, typer.Option("--resolved", help="Print every key a run resolves, defaults included, instead of the file.")
    ] = False,
    set_: SetOption = None,
) -> None:
    """Print a recipe file as shipped; with --resolved, every key with its value as a run sees it."""
    from hftk.commands.recipes import resolved_recipe_yaml, shipped_text

    if resolved or set_:
        typer.echo(resolved_recipe_yaml(name, set_ or []), nl=False)
        return
    typer.echo(shipped_text(name), nl=False)
    typer.echo(f"(the file as shipped; `hftk recipes show {name} --resolved` lists every key a run resolves)", err=True)


@app.command("accelerate-config")
def accelerate_config(
    name: Annotated[Optional[str], typer.Argument(help="fsdp or multi-node; none lists them all.")] = None,
) -> None:
    """Print the path of an Accelerate config that ships with hftk, for `accelerate launch --config_file`.

    Example: accelerate launch --config_file $(hftk accelerate-config fsdp) -m hftk pretrain my.yaml
    """
    from hftk.commands.accelerate_config import config_listing, config_path

    if name is None:
        for line in config_listing():
            typer.echo(line)
        return
    typer.echo(str(config_path(name)))


@app.command()
def convert(
    source: Annotated[str, typer.Argument(help="BERT or GPT-2 checkpoint folder (or Hub id).")],
    output_dir: Annotated[Path, typer.Argument(help="Folder for the converted hftk model.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace what the output folder holds.")] = False,
) -> None:
    """Convert a transformers BERT/GPT-2 checkpoint into the matching hftk model (same outputs)."""
    from hftk.commands.convert import convert_checkpoint

    folder = convert_checkpoint(source, output_dir, overwrite=overwrite)
    typer.echo(f"Converted model saved to {folder}")


@app.command()
def quantize(
    folder: Annotated[Path, typer.Argument(help="A saved model folder (e.g. a fine-tuned or distilled run).")],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Folder for the int8 model.")],
    overwrite: OverwriteOption = False,
) -> None:
    """Int8 weights and dynamic int8 activations for CPU inference; load with hftk.quantize.load_quantized."""
    from hftk.commands.quantize import quantize as run_quantize

    out = run_quantize(folder, output_dir, overwrite=overwrite)
    typer.echo(f"Quantized model saved to {out}")


@app.command()
def push(
    folder: Annotated[Path, typer.Argument(help="A finished run folder.")],
    repo_id: Annotated[str, typer.Option("--repo-id", help="Hub repository, OWNER/NAME.")],
    private: Annotated[bool, typer.Option("--private", help="Create the repository as private.")] = False,
    revision: Annotated[Optional[str], typer.Option("--revision", help="Branch to push to.")] = None,
    commit_message: Annotated[Optional[str], typer.Option("--commit-message", help="Commit message.")] = None,
    include_checkpoints: Annotated[
        bool, typer.Option("--include-checkpoints", help="Also upload checkpoints (optimizer states).")
    ] = False,
) -> None:
    """Upload a run folder to the Hugging Face Hub (token from HF_TOKEN or `hf auth login`)."""
    from hftk.commands.push import push as run_push

    url = run_push(
        folder,
        repo_id,
        private=private,
        revision=revision,
        commit_message=commit_message,
        include_checkpoints=include_checkpoints,
    )
    typer.echo(f"Pushed to {url}")


def close_progress_bars() -> None:
    """End the line of any progress bar an error left open, so that the error is a line of its own."""
    tqdm = sys.modules.get("tqdm")  # imported only if some work started
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", None) or ()):
        bar.close()


def main() -> None:
    """Console entry point: one-line errors, non-zero exit, no traceback unless --debug."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except TrainingInterrupted as interrupt:  # Ctrl-C in training: where it stopped and how to go on
        close_progress_bars()
        typer.echo(str(interrupt), err=True)
        sys.exit(130)
    except HftkError as error:
        if DEBUG["enabled"]:
            raise
        close_progress_bars()
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except SystemExit as exit_:  # Typer turns Ctrl-C outside training into a silent exit 130
        if exit_.code == 130:
            typer.echo("interrupted", err=True)
        raise
