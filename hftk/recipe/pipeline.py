"""The `hftk run` pipeline file: its schema, and loading it into one validated recipe per stage.

One YAML file answers "does my pretraining help, and by how much?": the pretrained model
and a randomly initialised model of the same architecture and tokenizer (the baseline)
are fine-tuned identically on each task, and `report.md` puts the numbers side by side.

A stage with `learning_curve` is also fine-tuned (both inits) at several training-set sizes with
several seeds, each run in `curves/`, so the report can show what pretraining buys when labels
are few. Every stage writes its own run folder under `output_dir`; a folder holding `metrics.json`
is finished and skipped on a re-run, an interrupted one resumes from its checkpoint. All
stage recipes are built and validated before anything runs, so a typo fails in a second.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from hftk.errors import HftkError
from hftk.recipe.schema import _as_list
from hftk.recipe.tasks import SEQ2SEQ_TASKS, TASKS, TaskName
from hftk.recipe import (
    RECIPES_DIR,
    FinetuneRecipe,
    PretrainRecipe,
    Section,
    apply_overrides,
    read_yaml,
    resolve_recipe_path,
    validate,
)

PRETRAIN_STAGE = "pretrain"
BASELINE_INIT_STAGE = "baseline-init"
BASELINE_PREFIX = "baseline-"
CURVES_DIR = "curves"
GENERATED_DATA_DIR = "data"  # hftk-data: files (hftk.data.austen_tasks) are written here, inside the run folder
STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Which pretraining gives a model type the heads its fine-tuning tasks load (hftk.recipe.tasks).
PRETRAINING_FOR = {
    "hftk_bert": "objective mlm or electra (recipe pretrain-default / pretrain-electra)",
    "hftk_gpt": "objective clm (recipe pretrain-gpt)",
    "hftk_seq2seq": "objective denoise (recipe pretrain-seq2seq)",
}

# ---------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------


class PretrainSpec(Section):
    """A pretrain recipe inline, or `recipe: NAME_OR_PATH` plus `set` overrides (or both: inline wins)."""

    recipe: str | None = Field(None, description="a pretraining recipe file or shipped name; the keys below are merged over it")
    set: list[str] = Field(default_factory=list, description="--set style overrides (KEY=VALUE) applied to the pretraining recipe")
    objective: Literal["mlm", "clm", "electra", "denoise"] | None = Field(None, description="the pretraining objective (as a recipe's objective)")
    model: dict[str, Any] | None = Field(None, description="recipe keys of the model section")
    tokenizer: dict[str, Any] | None = Field(None, description="recipe keys of the tokenizer section")
    data: dict[str, Any] | None = Field(None, description="recipe keys of the data section")
    training: dict[str, Any] | None = Field(None, description="recipe keys of the training section")

    _lists = field_validator("set", mode="before")(_as_list)


class LearningCurveSpec(Section):
    """Fine-tune at several training-set sizes, several seeds each: what pretraining buys when labels are few."""

    sizes: list[int | Literal["all"]] = Field(min_length=1, description="numbers of training examples; all = the whole set")
    seeds: int = Field(3, description="runs per size (seed = training.seed + i; each draws its own subset)")

    @field_validator("sizes")
    @classmethod
    def _positive_unique(cls, value: list[int | str]) -> list[int | str]:
        if any(isinstance(size, int) and size < 1 for size in value):
            raise ValueError("sizes must be positive numbers of training examples or 'all'")
        if len(set(value)) != len(value):
            raise ValueError("sizes must not repeat")
        return value

    @field_validator("seeds")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError("seeds must be at least 1 (fine-tuning runs per size)")
        return value


class FinetuneStage(Section):
    """One fine-tuning task run on the pretrained model (and on the baseline)."""

    name: str = Field(description="the stage's folder name (and its name in --set finetune.NAME.KEY=...)")
    task: TaskName = Field(description="the fine-tuning task")
    recipe: str | None = Field(None, description="default: finetune-TASK")
    set: list[str] = Field(default_factory=list, description="--set style overrides (KEY=VALUE) applied to the stage's recipe")
    model: dict[str, Any] | None = Field(None, description="recipe keys of the model section (model.name_or_path is the pretrained stage)")
    data: dict[str, Any] | None = Field(None, description="recipe keys of the data section")
    training: dict[str, Any] | None = Field(None, description="recipe keys of the training section")
    lora: dict[str, Any] | None = Field(None, description="recipe keys of the lora section")
    generation: dict[str, Any] | None = Field(None, description="recipe keys of the generation section")
    learning_curve: LearningCurveSpec | None = None

    _lists = field_validator("set", mode="before")(_as_list)

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        if not STAGE_NAME.match(value) or value in (PRETRAIN_STAGE, BASELINE_INIT_STAGE) or value.startswith(BASELINE_PREFIX):
            raise ValueError(
                f"stage name {value!r} must be a folder name (letters, digits, '_', '.', '-'), "
                f"not {PRETRAIN_STAGE!r} and not starting with {BASELINE_PREFIX!r}"
            )
        return value


class DistillStage(Section):
    """Distil a fine-tuning stage's model (the teacher) into a student on the same task and data (`hftk distill`)."""

    teacher: str = Field(description="the finetune stage whose model teaches")
    name: str | None = Field(None, description="stage folder (default: TEACHER-student)")
    recipe: str | None = Field(None, description="default: distill-classification (its loss and training settings)")
    set: list[str] = Field(default_factory=list, description="--set style overrides (KEY=VALUE) applied to the stage's distill recipe")
    student: dict[str, Any] | None = Field(None, description="keys of hftk distill's student section")
    distill: dict[str, Any] | None = Field(None, description="keys of hftk distill's distill section (the loss)")
    augment: dict[str, Any] | None = Field(None, description="keys of hftk distill's augment section")
    data: dict[str, Any] | None = Field(None, description="merged over the teacher stage's data")
    training: dict[str, Any] | None = Field(None, description="recipe keys of the training section")

    _lists = field_validator("set", mode="before")(_as_list)

    @property
    def folder(self) -> str:
        return self.name or f"{self.teacher}-student"


class BaselineSpec(Section):
    """Random initialisation of the pretrained architecture, fine-tuned like the pretrained model."""

    seed: int = Field(0, description="torch seed of the random-init twin's weights (its fine-tuning uses each stage's training.seed)")


class PushSpec(Section):
    """Upload every trained model folder to `<hub_model_id_prefix>-<stage>`."""

    hub_model_id_prefix: str = Field(description="every trained stage is pushed to PREFIX-STAGE (OWNER/NAME-STAGE)")
    private: bool = Field(False, description="create the Hub repositories as private")


class Pipeline(Section):
    """`hftk run`: where everything goes, the pretraining, the fine-tuning stages, baseline, push."""

    output_dir: str = Field("runs/pipeline", description="the folder that holds every stage's run folder and the report (-o on the command line)")
    pretrain: PretrainSpec
    finetune: list[FinetuneStage] = Field(default_factory=list, description="the fine-tuning stages, each run on the pretrained model (and on the baseline)")
    baseline: BaselineSpec | None = None
    distill: list[DistillStage] = Field(default_factory=list, description="distillation stages: students of fine-tuning stages")
    quantize: list[str] = Field(default_factory=list, description="finetune/distill stages to quantize to int8 (into STAGE-int8)")
    push: PushSpec | None = None

    @field_validator("baseline", mode="before")
    @classmethod
    def _baseline_flag(cls, value: Any) -> Any:
        if value is True:
            return {}
        return None if value is False else value

    @model_validator(mode="after")
    def _unique_names(self) -> Pipeline:
        names = [stage.name for stage in self.finetune]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"finetune stage names must be unique; repeated: {', '.join(duplicates)}")
        students = [stage.folder for stage in self.distill]
        for stage in self.distill:
            if stage.teacher not in names:
                raise ValueError(f"distill stage {stage.folder}: teacher {stage.teacher!r} is not a finetune stage ({', '.join(names) or 'none'})")
            if not STAGE_NAME.match(stage.folder) or stage.folder in (*names, PRETRAIN_STAGE, BASELINE_INIT_STAGE) or students.count(stage.folder) > 1:
                raise ValueError(f"distill stage name {stage.folder!r} must be a new folder name (letters, digits, '_', '.', '-')")
        unknown = [name for name in self.quantize if name not in (*names, *students)]
        if unknown:
            raise ValueError(f"quantize: {unknown[0]!r} is not a finetune or distill stage ({', '.join([*names, *students])})")
        return self


# ---------------------------------------------------------------------------------------------
# Loading: pipeline YAML + --set → validated pipeline and one validated recipe per stage
# ---------------------------------------------------------------------------------------------


@dataclass
class CurvePoint:
    """One learning-curve run: a training-set size and seed, on the pretrained model and on the baseline.

    The point (whole set, first seed) is the stage itself (`main`): it is not run twice.
    """

    stage: str
    size: int | None  # None: the stage's whole training set
    seed: int
    pretrained: FinetuneRecipe
    baseline: FinetuneRecipe | None
    main: bool
    examples: int | None  # training examples (None: a Hub set, not counted before it runs)

    @property
    def label(self) -> str:
        return "all" if self.size is None else str(self.size)

    @property
    def name(self) -> str:
        return f"{self.stage}/n{self.label}-seed{self.seed}"


class LoadedPipeline:
    """The validated pipeline with the recipe every stage will run (paths already filled in)."""

    def __init__(
        self,
        spec: Pipeline,
        pretrain: PretrainRecipe,
        finetune: dict[str, FinetuneRecipe],
        distill: dict[str, Any] | None = None,
        generated: dict[str, str] | None = None,
    ) -> None:
        self.spec = spec
        self.generated = generated or {}  # file path a stage reads -> the hftk-data: name it is written from
        self.pretrain = pretrain
        self.finetune = finetune
        self.distill = distill or {}  # stage folder -> DistillRecipe
        self.output_dir = Path(spec.output_dir)
        self.curves: dict[str, list[CurvePoint]] = {
            stage.name: curve_points(self, stage.name, stage.learning_curve) for stage in spec.finetune if stage.learning_curve
        }

    def stage_dir(self, name: str) -> Path:
        return self.output_dir / name


def train_set_size(recipe: FinetuneRecipe) -> int | None:
    """Examples a stage trains on (its data.max_train_samples applied); None for Hub data (checked when it runs)."""
    if not recipe.data.train_file:
        return None
    from datasets.utils import logging as datasets_logging

    from hftk.data.splits import load_splits

    shown = datasets_logging.is_progress_bar_enabled()
    datasets_logging.disable_progress_bar()  # a count on load: no progress bar before a possible one-line error
    try:
        size = len(load_splits(data_files={"train": recipe.data.train_file})["train"])
    finally:
        if shown:
            datasets_logging.enable_progress_bar()
    return min(size, recipe.data.max_train_samples or size)


def curve_points(pipeline: LoadedPipeline, name: str, spec: LearningCurveSpec) -> list[CurvePoint]:
    """Every (size, seed) run of one stage's learning curve, with its recipes; sizes checked against the data."""
    recipe = pipeline.finetune[name]
    if recipe.data.train_file in pipeline.generated:
        from hftk.data import austen_tasks

        rows = len(austen_tasks.rows(pipeline.generated[recipe.data.train_file]))
        total = min(rows, recipe.data.max_train_samples or rows)
    else:
        total = train_set_size(recipe)
    too_big = [size for size in spec.sizes if size != "all" and total is not None and size > total]
    if too_big:
        raise HftkError(
            f"finetune stage {name}: learning_curve size {too_big[0]} is larger than the training set "
            f"({total} examples{' after data.max_train_samples' if recipe.data.max_train_samples else ''}); "
            f"use sizes up to {total} or 'all'"
        )
    init = pipeline.stage_dir(BASELINE_INIT_STAGE)
    curves = pipeline.output_dir / CURVES_DIR
    points = []
    for size in spec.sizes:
        for index in range(spec.seeds):
            seed = recipe.training.seed + index
            main = size == "all" and index == 0
            folder = f"n{size}-seed{seed}"
            run = recipe if main else recipe.model_copy(deep=True)
            if not main:
                run.training.seed = seed
                run.output.output_dir = str(curves / name / folder)
                if size != "all":
                    run.data.max_train_samples = size
                    run.data.train_sample_seed = seed
            baseline = None
            if pipeline.spec.baseline is not None:
                target = pipeline.stage_dir(BASELINE_PREFIX + name) if main else curves / (BASELINE_PREFIX + name) / folder
                baseline = with_model(run, init, target)
            examples = total if size == "all" else size
            points.append(CurvePoint(name, None if size == "all" else size, seed, run, baseline, main, examples))
    return points


def split_overrides(
    overrides: list[str], stage_names: list[str], student_names: list[str] | None = None
) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """Route `--set` items: `pretrain.KEY=V`, `finetune.NAME.KEY=V` / `finetune.*.KEY=V` (`distill.NAME.KEY=V` /
    `distill.*.KEY=V` for distill stages, returned under `distill:NAME`), or a pipeline key."""
    student_names = student_names or []
    top, pretrain = [], []
    stages = {name: [] for name in stage_names} | {f"distill:{name}": [] for name in student_names}
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if parts[0] == "pretrain" and len(parts) > 1 and parts[1] not in ("recipe", "set"):
            pretrain.append(f"{'.'.join(parts[1:])}={value}")
        elif parts[0] in ("finetune", "distill") and len(parts) > 2:
            names = stage_names if parts[0] == "finetune" else student_names
            prefix = "" if parts[0] == "finetune" else "distill:"
            targets = names if parts[1] == "*" else [parts[1]]
            if parts[1] != "*" and parts[1] not in names:
                raise HftkError(f"--set {key}: no {parts[0]} stage {parts[1]!r}; stages: {', '.join(names) or 'none'}")
            for name in targets:
                stages[prefix + name].append(f"{'.'.join(parts[2:])}={value}")
        else:
            top.append(item)
    return top, pretrain, stages


def load_pipeline(path: str | Path, overrides: list[str] | None = None) -> LoadedPipeline:
    """Read and validate a pipeline file and build every stage's recipe; nothing runs yet."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise HftkError("hftk run runs its stages in one process; under accelerate launch use hftk pretrain / finetune")
    path = resolve_recipe_path(path)  # a file, or a shipped name such as pipeline-shared
    data = read_yaml(path)
    stage_names = [s.get("name") for s in data.get("finetune") or [] if isinstance(s, dict) and s.get("name")]
    student_names = [
        s.get("name") or f"{s.get('teacher')}-student" for s in data.get("distill") or [] if isinstance(s, dict) and s.get("teacher")
    ]
    top, pretrain_sets, stage_sets = split_overrides(overrides or [], stage_names, student_names)
    apply_overrides(data, top)
    for stage in data.get("finetune") or []:  # finetune.NAME.learning_curve.* is a pipeline key, not a recipe key
        if isinstance(stage, dict) and stage.get("name") in stage_sets:
            sets = stage_sets[stage["name"]]
            curve = [item for item in sets if item.partition("=")[0].strip().split(".")[0] == "learning_curve"]
            stage_sets[stage["name"]] = [item for item in sets if item not in curve]
            apply_overrides(stage, curve)
    spec = validate(Pipeline, data, str(path))
    output_dir = Path(spec.output_dir)
    pretrain = build_pretrain_recipe(spec.pretrain, pretrain_sets, output_dir / PRETRAIN_STAGE)
    check_tasks_fit_model(spec, pretrain)
    finetune = {
        stage.name: build_finetune_recipe(stage, stage_sets.get(stage.name, []), output_dir / stage.name, output_dir / PRETRAIN_STAGE)
        for stage in spec.finetune
    }
    check_lengths_fit_model(pretrain, finetune)
    generated = place_generated_data(finetune.values(), output_dir / GENERATED_DATA_DIR)
    if path.resolve().parent == RECIPES_DIR.resolve():
        _anchor_shipped_paths(pretrain, finetune.values())
    distill = {  # after the anchoring: students read their teacher stage's (anchored) data
        stage.folder: build_distill_recipe(stage, stage_sets.get(f"distill:{stage.folder}", []), finetune[stage.teacher], output_dir)
        for stage in spec.distill
    }
    return LoadedPipeline(spec, pretrain, finetune, distill, generated)


def place_generated_data(finetune, folder: Path) -> dict[str, str]:
    """Point every `hftk-data:NAME/SPLIT.jsonl` a stage names at its file under `folder`; return file -> name.

    The files are written when the pipeline runs (hftk.commands.run.write_generated_data), not on load.
    """
    from hftk.data import austen_tasks

    generated = {}
    for recipe in finetune:
        for key in ("train_file", "validation_file", "test_file"):
            value = getattr(recipe.data, key)
            if austen_tasks.is_generated(value):
                path = str(austen_tasks.target_path(value, folder))  # also checks the name: a one-line error on load
                setattr(recipe.data, key, path)
                generated[path] = value
    return generated



def check_tasks_fit_model(spec: Pipeline, pretrain: PretrainRecipe) -> None:
    """Every finetune task has a head on the pretrained model type.

    Found here, on load, rather than when the stage loads its model after pretraining has run.
    """
    from hftk.models import AUTO_CLASSES, MODEL_TYPES

    model_type = pretrain.model.type  # set from the objective by PretrainRecipe's validation
    heads = {auto_class.__name__ for auto_class in AUTO_CLASSES[MODEL_TYPES[model_type]]}
    fitting = [task for task, spec in TASKS.items() if spec.auto_class in heads]
    for stage in spec.finetune:
        head = TASKS[stage.task].auto_class
        if head not in heads:
            home = next(kind for kind, config in MODEL_TYPES.items() if head in {a.__name__ for a in AUTO_CLASSES[config]})
            raise HftkError(
                f"finetune stage {stage.name}: task {stage.task} needs a model with an {head} head, and the pipeline pretrains "
                f"{model_type} (objective {pretrain.objective}), which has none; tasks for {model_type}: {', '.join(fitting)}; "
                f"for {stage.task} pretrain {home} with {PRETRAINING_FOR[home]}"
            )


def check_lengths_fit_model(pretrain: PretrainRecipe, finetune: dict[str, FinetuneRecipe]) -> None:
    """Sequence lengths a stage sets that the model pretraining will make cannot take, found before it is made.

    The limit is the model's positions (model.config.max_position_embeddings; `hftk pretrain`
    gives at least its block length, and 128), which `hftk finetune` reads from config.json once
    the model exists. Unknown when the pretraining continues from a model, whose config decides.
    """
    if pretrain.model.name_or_path:
        return
    limit = pretrain.model.config.get("max_position_embeddings") or max(pretrain.data.max_seq_length, 128)
    for name, recipe in finetune.items():
        if (recipe.data.max_seq_length or 0) > limit:
            raise HftkError(
                f"finetune stage {name}: data.max_seq_length ({recipe.data.max_seq_length}) exceeds the {limit} tokens the pretrained "
                f"model takes (pretrain model.config.max_position_embeddings); use at most {limit}, or raise that"
            )
        if recipe.task in SEQ2SEQ_TASKS and recipe.generation.max_new_tokens >= limit:
            raise HftkError(
                f"finetune stage {name}: generation.max_new_tokens ({recipe.generation.max_new_tokens}) must be smaller than the "
                f"{limit} positions of the pretrained model (pretrain model.config.max_position_embeddings); use at most {limit - 1}"
            )


def data_paths(pretrain: PretrainRecipe, finetune) -> list[tuple[Section, str, str]]:
    """(section, field, label) of every local input path the stages read."""
    found = [(pretrain.data, "train_files", "pretrain data.train_files"), (pretrain.data, "validation_files", "pretrain data.validation_files")]
    for recipe in finetune:
        stage = Path(recipe.output.output_dir).name
        found += [(recipe.data, key, f"finetune stage {stage}: data.{key}") for key in ("train_file", "validation_file", "test_file")]
    return found


def _anchor_shipped_paths(pretrain: PretrainRecipe, finetune) -> None:
    """Shipped pipelines name ../shared relative to the repository root; make them work from any folder.

    A relative path that exists from the current folder is kept (the documented way: run from
    the repository root); one that does not, but does from the root of the checkout holding
    this hftk, is made absolute there.
    """
    root = RECIPES_DIR.resolve().parents[1]

    def anchor(value: str) -> str:
        if Path(value).is_absolute() or Path(value).exists() or not (root / value).exists():
            return value
        return str((root / value).resolve())

    for section, key, _ in data_paths(pretrain, finetune):
        value = getattr(section, key)
        if isinstance(value, list):
            setattr(section, key, [anchor(v) for v in value])
        elif value:
            setattr(section, key, anchor(value))


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _recipe_data(spec: Section, recipe_name: str | None, inline_keys: tuple[str, ...]) -> dict[str, Any]:
    data = read_yaml(resolve_recipe_path(recipe_name)) if recipe_name else {}
    inline = {key: getattr(spec, key) for key in inline_keys if getattr(spec, key) is not None}
    return _deep_merge(data, inline)


def _output_overrides(output_dir: Path) -> list[str]:
    return [f"output.output_dir={output_dir}", "output.overwrite=false", "output.push_to_hub=false"]


def build_pretrain_recipe(spec: PretrainSpec, extra_sets: list[str], output_dir: Path) -> PretrainRecipe:
    data = _recipe_data(spec, spec.recipe, ("objective", "model", "tokenizer", "data", "training"))
    data.pop("output", None)  # the pipeline decides where every stage goes
    apply_overrides(data, [*spec.set, *extra_sets, *_output_overrides(output_dir)])
    return validate(PretrainRecipe, data, "pipeline key pretrain")


def build_finetune_recipe(stage: FinetuneStage, extra_sets: list[str], output_dir: Path, model_dir: Path) -> FinetuneRecipe:
    data = _recipe_data(stage, stage.recipe or f"finetune-{stage.task}", ("model", "data", "training", "lora", "generation"))
    data.pop("output", None)
    data["task"] = stage.task
    apply_overrides(data, [*stage.set, *extra_sets])
    if (data.get("model") or {}).get("name_or_path"):
        raise HftkError(f"finetune stage {stage.name}: model.name_or_path is set by the pipeline (the pretrained model); remove it")
    apply_overrides(data, [f"model.name_or_path={model_dir}", *_output_overrides(output_dir)])
    return validate(FinetuneRecipe, data, f"pipeline finetune stage {stage.name}")


def build_distill_recipe(stage: DistillStage, extra_sets: list[str], teacher: FinetuneRecipe, output_dir: Path):
    """The `hftk distill` recipe of a distill stage: the teacher stage's task and data, the distill recipe's settings."""
    from hftk.recipe.distill import DistillRecipe

    if not TASKS[teacher.task].distillable:
        raise HftkError(f"distill stage {stage.folder}: teacher stage {stage.teacher} is a {teacher.task} task; distil classification, glue, qa or ner")
    data = read_yaml(resolve_recipe_path(stage.recipe or "distill-classification"))
    data.pop("output", None)
    data["task"] = teacher.task
    data["data"] = _deep_merge(data.get("data") or {}, teacher.data.model_dump(mode="json"))
    inline = {key: getattr(stage, key) for key in ("student", "distill", "augment", "data", "training") if getattr(stage, key) is not None}
    data = _deep_merge(data, inline)
    apply_overrides(data, [*stage.set, *extra_sets])
    if (data.get("teacher") or {}).get("name_or_path"):
        raise HftkError(f"distill stage {stage.folder}: teacher.name_or_path is set by the pipeline (stage {stage.teacher}); remove it")
    apply_overrides(data, [f"teacher.name_or_path={output_dir / stage.teacher}", *_output_overrides(output_dir / stage.folder)])
    return validate(DistillRecipe, data, f"pipeline distill stage {stage.folder}")


def with_model(recipe: FinetuneRecipe, model_dir: Path, output_dir: Path) -> FinetuneRecipe:
    """The same fine-tuning recipe, started from another model into another folder (the baseline)."""
    twin = recipe.model_copy(deep=True)
    twin.model.name_or_path = str(model_dir)
    twin.output.output_dir = str(output_dir)
    return twin
