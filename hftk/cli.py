"""The `hftk` command line (Typer).

Every command turns user mistakes into one line on stderr and exit code 2; `--debug` shows
the traceback instead. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from hftk.errors import HftkError, TrainingInterrupted
from hftk.training.budget import BUDGET_RULE

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
export_app = typer.Typer(help="Export a model to another runtime's format (ONNX).", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(export_app, name="export")

DEBUG = {"enabled": False}
QUIET: dict = {}
USER_FIXABLE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}

SetOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--set", "-s", metavar="KEY=VALUE", help="Override a recipe key, e.g. --set training.learning_rate=3e-4 (repeatable; `hftk recipes show RECIPE --explain` lists every key).",
    ),
]
OutputDirOption = Annotated[
    Optional[Path],
    typer.Option(
        "--output-dir", "-o", metavar="DIR",
        help="Where the run folder goes (= --set output.output_dir=DIR). Default: the recipe's output.output_dir, runs/RECIPE-NAME for a shipped recipe.",
    ),
]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace a finished run in the output folder.")]
ResumeOption = Annotated[
    bool, typer.Option("--resume", help="Continue from the newest complete checkpoint in the output folder.")
]
PushOption = Annotated[bool, typer.Option("--push-to-hub", help="Upload the result to the Hub when training ends.")]
HubIdOption = Annotated[Optional[str], typer.Option("--hub-model-id", metavar="OWNER/NAME", help="Hub repository, OWNER/NAME.")]


@app.callback(epilog=BUDGET_RULE)
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the result line and errors: no progress, logs or warnings (hftk -q finetune ...).")
    ] = False,
) -> None:
    DEBUG["enabled"] = debug
    if quiet:
        be_quiet()


def be_quiet() -> None:
    """--quiet: the libraries' bars, logs and warnings off; our own progress lines go to /dev/null.

    Set before any library is imported (commands import them lazily). `result()` still writes
    to the real stdout, and errors still reach stderr.
    """
    import warnings

    for name in ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ[name] = "1"
    os.environ["TRANSFORMERS_VERBOSITY"] = os.environ["DATASETS_VERBOSITY"] = "error"
    warnings.simplefilter("ignore")
    QUIET["stdout"] = sys.stdout
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)


def result(line: str) -> None:
    """The line a command ends with (where its output went); printed under --quiet too."""
    typer.echo(line, file=QUIET.get("stdout") or sys.stdout)


def announce(command: str, output_dir, training=None) -> None:
    """A run's first line: where its output goes and the budget the recipe sets (the run prints the exact steps)."""
    from hftk.training.budget import recipe_budget

    typer.echo(f"hftk {command} -> {output_dir}" + (f" (budget: {recipe_budget(training)})" if training is not None else ""))


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
    """Pretrain a model from raw text.

    Trains a tokenizer, packs the text and runs the Accelerate loop with checkpoints. With no
    RECIPE it runs pretrain-default, a small BERT-style encoder on the Jane Austen novels that
    ship with hftk (`hftk recipes list` says how long it takes). Runs under `accelerate launch`
    too. Ctrl-C writes a checkpoint; continue with --resume.
    """
    from hftk.recipe import PretrainRecipe, load_recipe

    overrides = [*(set_ or []), *_output_overrides(output_dir, overwrite, push_to_hub, hub_model_id)]
    loaded = load_recipe(PretrainRecipe, recipe or "pretrain-default", overrides)
    _check_push(loaded.output)
    announce("pretrain", loaded.output.output_dir, loaded.training)
    from hftk.commands.pretrain import pretrain as run_pretrain  # torch & co. only once the recipe is known good

    folder = run_pretrain(loaded, resume=resume)
    _maybe_push(folder, loaded.output)
    result(f"Model saved to {folder}")


def _check_push(output) -> None:
    if output.push_to_hub:  # the Hub client is imported only when a push is asked for
        from hftk.commands.push import check_push

        check_push(output)


def _maybe_push(folder: Path, output) -> None:
    if output.push_to_hub:
        from hftk.commands.push import push_finished_run

        url = push_finished_run(folder, output)
        if url:
            result(f"Pushed to {url}")


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
    """Fine-tune a model on a task and evaluate it.

    The model is an hftk folder or any transformers checkpoint. Data comes from the Hub (data.dataset_name) or local files in the Hub's column layout
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
    announce(f"finetune {task}", loaded.output.output_dir, loaded.training)
    from hftk.commands.finetune import finetune as run_finetune  # torch & co. only once the recipe is known good

    folder = run_finetune(loaded, resume=resume)
    _maybe_push(folder, loaded.output)
    result(f"Model saved to {folder}")


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
    """Distil a fine-tuned teacher into a smaller student.

    Same data options and outputs as finetune. Student: --set 'student.layers=[0,2,4]' (teacher layers), student.name_or_path=FOLDER or
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
    announce(f"distill {task}", loaded.output.output_dir, loaded.training)
    folder = run_distill(loaded, resume=resume)
    _maybe_push(folder, loaded.output)
    result(f"Model saved to {folder}")


@app.command()
def evaluate(
    task: Annotated[str, typer.Argument(help="glue, classification, qa, ner, generation, translation or summarization.")],
    model: Annotated[str, typer.Option("--model", "-m", help="The fine-tuned model folder to evaluate.")],
    recipe: Annotated[Optional[str], typer.Option("--recipe", "-r", help="Recipe YAML (default: finetune-TASK).")] = None,
    glue_task: Annotated[Optional[str], typer.Option("--task", "-t", help="GLUE task name.")] = None,
    set_: SetOption = None,
    output_dir: Annotated[
        Optional[Path], typer.Option("--output-dir", "-o", metavar="DIR", help="Where metrics.json and predictions.jsonl go (default: runs/evaluate-MODELNAME).")
    ] = None,
) -> None:
    """Score a saved model on a task's evaluation data.

    Writes metrics.json and predictions.jsonl into --output-dir, never into the model's folder.
    """
    # Never into the model's own folder by default: it may be shared, read-only, or a pushed repo's clone.
    default = Path("runs") / f"evaluate-{Path(model).name or 'model'}"
    overrides = [*(set_ or []), *_output_overrides(output_dir or default, False, False, None)]
    loaded = _finetune_recipe(task, recipe, model, glue_task, overrides)
    announce(f"evaluate {task}", loaded.output.output_dir)
    from hftk.commands.evaluate import evaluate as run_evaluate  # torch & co. only once the recipe is known good

    folder = run_evaluate(loaded)
    result(f"Metrics written to {folder / 'metrics.json'}")


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
        Optional[Path],
        typer.Option(
            "--output-dir", "-o", metavar="DIR",
            help="Where the stage folders and report go (= --set output_dir=DIR). Default: the pipeline's output_dir, runs/PIPELINE-NAME for a shipped one.",
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Run every stage again, even finished ones.")] = False,
) -> None:
    """Run a pipeline: pretrain, fine-tune, compare, report.

    Pretrains, fine-tunes every task (and a random-init baseline), then writes report.md with
    plots. Finished stages are skipped on a re-run; an interrupted stage resumes from its checkpoint.
    Every stage's recipe and data files are checked before the first stage starts.
    """
    from hftk.commands.run import run_pipeline
    from hftk.recipe.pipeline import load_pipeline

    overrides = [*(set_ or []), *([f"output_dir={output_dir}"] if output_dir is not None else [])]
    loaded = load_pipeline(pipeline, overrides)
    announce("run", loaded.output_dir)
    report = run_pipeline(loaded, overwrite=overwrite, echo=typer.echo)
    result(f"Report written to {report}")


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
    explain: Annotated[
        bool, typer.Option("--explain", help="Print every key a run resolves with its value, type and meaning.")
    ] = False,
    set_: SetOption = None,
) -> None:
    """Print a recipe file as shipped; with --resolved, every key with its value as a run sees it."""
    from hftk.commands.recipes import explained_recipe, resolved_recipe_yaml, shipped_text

    if explain:
        typer.echo(explained_recipe(name, set_ or []), nl=False)
        return
    if resolved or set_:
        typer.echo(resolved_recipe_yaml(name, set_ or []), nl=False)
        return
    typer.echo(shipped_text(name), nl=False)
    typer.echo(f"(the file as shipped; `hftk recipes show {name} --resolved` lists every key a run resolves)", err=True)


@app.command("accelerate-config")
def accelerate_config(
    name: Annotated[Optional[str], typer.Argument(help="fsdp or multi-node; none lists them all.")] = None,
) -> None:
    """Print the path of a shipped Accelerate config.

    For `accelerate launch --config_file`.

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
    source: Annotated[str, typer.Argument(help="A BERT, GPT-2, BART or Marian checkpoint folder (or Hub id).")],
    output_dir: Annotated[Path, typer.Argument(help="Folder for the converted hftk model.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace what the output folder holds.")] = False,
) -> None:
    """Convert a BERT, GPT-2, BART or Marian model to hftk.

    The converted model gives the same outputs. BERT becomes hftk_bert, GPT-2 hftk_gpt, BART and Marian hftk_seq2seq; the converted model gives the
    source's logits to 1e-4. T5 is refused (its relative position bias is not one of hftk's position types).
    """
    from hftk.commands.convert import convert_checkpoint

    folder = convert_checkpoint(source, output_dir, overwrite=overwrite)
    result(f"Converted model saved to {folder}")


@app.command()
def quantize(
    folder: Annotated[Path, typer.Argument(help="A saved model folder (e.g. a fine-tuned or distilled run).")],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Folder for the int8 model.")],
    format: Annotated[
        Optional[str],
        typer.Option("--format", metavar="onnx|torchao", help="onnx: int8 ONNX graph for ONNX Runtime; torchao: a "
                     "folder AutoModelFor*.from_pretrained loads (torchao). Default: the faster on CPU."),
    ] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Make an int8 copy of a model for CPU inference.

    Int8 weights and dynamic int8 activations, in a format standard tools load: ONNX Runtime
    (--format onnx, the default) or transformers' torchao integration (--format torchao).
    """
    from hftk.commands.quantize import quantize as run_quantize

    out = run_quantize(folder, output_dir, format=format, overwrite=overwrite)
    result(f"Quantized model saved to {out}")


@export_app.command("onnx")
def export_onnx(
    folder: Annotated[Path, typer.Argument(help="A saved model folder with an encoder head (classification, NER, QA).")],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Folder for model.onnx and model_quantized.onnx.")],
    int8: Annotated[bool, typer.Option("--int8/--no-int8", help="Also write the int8 graph (onnxruntime dynamic quantization).")] = True,
    overwrite: OverwriteOption = False,
) -> None:
    """ONNX graphs of a model for ONNX Runtime, checked against PyTorch's outputs (max |diff| printed)."""
    from hftk.commands.export import export_onnx as run_export

    for line in run_export(folder, output_dir, int8=int8, overwrite=overwrite):
        typer.echo(line)


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
    """Upload a run folder to the Hugging Face Hub.

    The token comes from HF_TOKEN or `hf auth login`.
    """
    from hftk.commands.push import push as run_push

    url = run_push(
        folder,
        repo_id,
        private=private,
        revision=revision,
        commit_message=commit_message,
        include_checkpoints=include_checkpoints,
    )
    result(f"Pushed to {url}")


def close_progress_bars() -> None:
    """End the line of any progress bar an error left open, so that the error is a line of its own."""
    tqdm = sys.modules.get("tqdm")  # imported only if some work started
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", None) or ()):
        bar.close()


def quiet_import_noise() -> None:
    """Drop log lines that say nothing to a hftk user and would break one-line errors.

    transformers imports torchao whenever it is installed (its quantizer registry); torchao 0.18
    then logs a warning for each CUDA kernel library it cannot load on a CPU machine, and torch
    one for each enum torchao registers with the (deprecated) pytree constant API.
    """
    import logging

    logging.getLogger("torchao").setLevel(logging.ERROR)
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)


def main() -> None:
    """Console entry point: one-line errors, non-zero exit, no traceback unless --debug."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not sys.stderr.isatty():  # a log file keeps every `\r` redraw of a bar: the loop writes lines instead
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if not {"--help", "-h"} & set(sys.argv):
        from hftk import offline

        offline.install()  # an unreachable Hub: offline after the first failure, not ~40 s of retries
    quiet_import_noise()
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
    except OSError as error:
        # A folder or disk the user pointed at refuses a write (read-only, no permission, full):
        # the user's to fix, so one line, like HftkError. Any other OSError is a bug: traceback.
        if DEBUG["enabled"] or error.errno not in USER_FIXABLE_ERRNOS:
            raise
        close_progress_bars()
        where = f" {error.filename}" if error.filename else ""
        fix = "free some disk space" if error.errno in (errno.ENOSPC, errno.EDQUOT) else "check its permissions or choose another --output-dir"
        typer.echo(f"error: cannot write or read{where} ({error.strerror}); {fix}", err=True)
        sys.exit(2)
    except SystemExit as exit_:  # Typer turns Ctrl-C outside training into a silent exit 130
        if exit_.code == 130:
            typer.echo("interrupted", err=True)
        raise
