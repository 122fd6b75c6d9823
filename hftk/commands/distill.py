"""`hftk distill TASK --teacher FOLDER`: fine-tuning's data, loop and outputs, with a teacher.

`distill(recipe)` checks everything it can before writing (teacher head and fit, student source,
tokenizers), builds the student (a folder, teacher layers, or a fresh config) in a temporary
folder, then runs `hftk.commands.finetune.finetune` with a `Distiller`, which adds the teacher's cached
outputs to the training rows and trains the student through `DistillationModel`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import datasets
import torch
from accelerate import Accelerator

from hftk.data.tokenizer import load_tokenizer
from hftk.distill.augment import featurize_unlabeled, load_proposer, load_unlabeled, perturbed_copies
from hftk.distill.model import DistillationCollator, DistillationModel, layer_map
from hftk.recipe.distill import DistillRecipe
from hftk.distill.student import write_fresh_student, write_layer_selection
from hftk.distill.teacher import cache_teacher_outputs, load_teacher, teacher_labels
from hftk.errors import HftkError
from hftk.recipe import dump_recipe
from hftk.recipe.tasks import TASKS
from hftk.tasks import TaskData
from hftk.data.splits import DataSource

HEAD_SUFFIXES = {
    "sequence_classification": "ForSequenceClassification",
    "token_classification": "ForTokenClassification",
    "question_answering": "ForQuestionAnswering",
}


def same_tokenizer(a, b) -> bool:
    """Same vocabulary, same ids: token positions and hidden states line up between the models."""
    return a.get_vocab() == b.get_vocab()


class Distiller:
    """The hooks `finetune(..., distiller=)` calls (see its docstring)."""

    def __init__(
        self, recipe: DistillRecipe, teacher, teacher_tokenizer, student_tokenizer, student_folder: str, proposer: tuple | None = None
    ) -> None:
        self.recipe, self.teacher, self.teacher_tokenizer, self.proposer = recipe, teacher, teacher_tokenizer, proposer
        self.student_tokenizer, self.student_folder = student_tokenizer, student_folder
        self.kind = TASKS[recipe.task].kind
        self.shared_tokenizer = same_tokenizer(teacher_tokenizer, student_tokenizer)
        self.metrics: dict[str, Any] = {}

    @property
    def base_model(self) -> str:
        return self.recipe.teacher.name_or_path

    @property
    def recipe_yaml(self) -> str:
        return dump_recipe(self.recipe)

    def unwrap(self, model):
        return model.student if isinstance(model, DistillationModel) else model

    def check(self, task: TaskData, student_config) -> None:
        """Label sets of teacher, data and a student head must be one and the same."""
        names = [task.id2label[i] for i in range(task.num_labels)] if task.id2label else None
        teacher_names = teacher_labels(self.teacher, self.kind)
        if self.kind != "question_answering" and names != teacher_names:
            raise HftkError(
                f"teacher {self.base_model} predicts labels {teacher_names} but the {self.recipe.task} data has "
                f"{names}: use a teacher fine-tuned on this label set"
            )
        has_head = any(arch.endswith(HEAD_SUFFIXES[self.kind]) for arch in (student_config.architectures or []))
        if has_head and names is not None and self.recipe.student.name_or_path:
            student_names = [student_config.id2label[i] for i in range(student_config.num_labels)]
            if student_names != names:
                raise HftkError(
                    f"student {self.recipe.student.name_or_path} has a head for labels {student_names} but the teacher "
                    f"and data have {names}: use a student without a head or with the same labels"
                )
        if task.problem_type == "multi_label_classification":
            raise HftkError("distillation of multi-label classification is not supported; use single-label or regression data")

    def attach(self, model, task: TaskData, accelerator: Accelerator) -> DistillationModel:
        """Add augmentation rows and the teacher's cached outputs to `task.train`; wrap the student."""
        recipe, data = self.recipe, self.recipe.data
        train = task.train
        teacher_train = train if self.shared_tokenizer else self._teacher_features()
        text, pair = data.text_column or "text", data.text_pair_column
        extra_texts = []
        if data.unlabeled_files:
            extra_texts.append(load_unlabeled(data.unlabeled_files, text, pair))
            self.metrics["distill_unlabeled_rows"] = len(extra_texts[-1])
        if self.proposer is not None:
            extra_texts.append(self._perturbed_copies(text, pair, accelerator))
            self.metrics["distill_augmented_rows"] = len(extra_texts[-1])
        if extra_texts:
            raw = datasets.concatenate_datasets(extra_texts) if len(extra_texts) > 1 else extra_texts[0]
            settings = dict(text_column=text, text_pair_column=pair, max_seq_length=data.max_seq_length)
            extra = featurize_unlabeled(raw, self.student_tokenizer, train, **settings)
            train = datasets.concatenate_datasets([train, extra])
            if self.shared_tokenizer:
                teacher_train = train
            else:
                teacher_extra = featurize_unlabeled(raw, self.teacher_tokenizer, teacher_train, **settings)
                teacher_train = datasets.concatenate_datasets([teacher_train, teacher_extra])
        self.teacher.to(accelerator.device)
        started = time.perf_counter()
        teacher_collator = task.collator if self.shared_tokenizer else self._teacher_collator()
        with accelerator.autocast():  # the recipe's precision (bf16 halves the one teacher pass on CPUs with bf16)
            columns = cache_teacher_outputs(self.teacher, teacher_train, teacher_collator, self.kind, recipe.teacher.batch_size)
        self.metrics["distill_teacher_cache_seconds"] = time.perf_counter() - started
        self.metrics["distill_train_rows"] = len(train)
        for name, values in columns.items():
            train = train.add_column(name, values)
        task.train = train
        task.collator = DistillationCollator(task.collator, getattr(self.student_tokenizer, "padding_side", "right"))
        settings = recipe.distill
        pairs = None
        if settings.hidden_weight > 0:
            pairs = layer_map(model.config.num_hidden_layers, self.teacher.config.num_hidden_layers, recipe.student.layers)
        wrapped = DistillationModel(
            model,
            self.kind,
            temperature=settings.temperature,
            alpha=settings.alpha,
            regression=task.problem_type == "regression",
            hidden_weight=settings.hidden_weight,
            teacher=self.teacher if settings.hidden_weight > 0 else None,
            layer_pairs=pairs,
        )
        if wrapped.projection is not None:  # trained with the student: --resume must restore it
            accelerator.register_for_checkpointing(wrapped.projection)
        return wrapped

    def _perturbed_copies(self, text: str, pair: str | None, accelerator: Accelerator) -> datasets.Dataset:
        """TinyBERT's augmentation of the training texts (the same rows `build_task` trains on)."""
        recipe, data, settings = self.recipe, self.recipe.data, self.recipe.augment
        raw = DataSource.from_recipe(data).training_rows()
        model, tokenizer = self.proposer
        model.to(accelerator.device)
        started = time.perf_counter()
        with accelerator.autocast():
            copies = perturbed_copies(
                list(raw[text]), model, tokenizer, copies=settings.copies, probability=settings.replace_probability,
                top_k=settings.top_k, seed=recipe.training.seed, max_length=data.max_seq_length, batch_size=settings.batch_size,
            )
        self.metrics["distill_augment_seconds"] = time.perf_counter() - started
        columns = {text: [copy for _, copy in copies]}
        if pair:
            columns[pair] = [raw[pair][i] for i, _ in copies]
        return datasets.Dataset.from_dict(columns, features=raw.select_columns(list(columns)).features)

    def _teacher_features(self) -> datasets.Dataset:
        """The training rows tokenised for the teacher (classification only: one row per example, same order)."""
        from hftk.tasks.build import build_task

        return build_task(self.recipe, self.teacher_tokenizer).train

    def _teacher_collator(self):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(self.teacher_tokenizer)


def check_recipe(recipe: DistillRecipe) -> None:
    if recipe.model.name_or_path:
        raise HftkError("hftk distill takes the student from student.name_or_path, student.layers or student.config, not model.name_or_path")
    student = recipe.student
    if not (student.name_or_path or student.layers or student.config):
        raise HftkError(
            "no student: pass student.layers (e.g. --set 'student.layers=[0,2,4]'), student.name_or_path=FOLDER "
            "or student.config.KEY=VALUE for a fresh hftk_bert"
        )
    if recipe.data.unlabeled_files and recipe.task != "classification":
        raise HftkError(f"data.unlabeled_files works for classification, not {recipe.task}: drop it or use `hftk distill classification`")
    if recipe.augment.copies and recipe.task != "classification":
        raise HftkError(f"augment.copies works for classification, not {recipe.task}: drop it or use `hftk distill classification`")
    if recipe.lora.r > 0:
        raise HftkError("hftk distill trains the whole student: drop lora.r")


def distill(recipe: DistillRecipe, *, resume: bool = False) -> Path:
    """Distil the teacher into a student on the recipe's task; return the output folder."""
    from hftk.commands.finetune import finetune

    check_recipe(recipe)
    if recipe.training.num_threads:
        torch.set_num_threads(recipe.training.num_threads)
    teacher_path = recipe.teacher.name_or_path
    teacher = load_teacher(teacher_path, recipe.task, recipe.model.attn_implementation)
    teacher_tokenizer = load_tokenizer(teacher_path)
    student = recipe.student
    if student.name_or_path:
        if not (Path(student.name_or_path) / "config.json").is_file():
            raise HftkError(f"student folder {student.name_or_path} has no config.json: point student.name_or_path at a saved model folder")
        student_tokenizer = load_tokenizer(student.name_or_path)
    else:
        student_tokenizer = teacher_tokenizer
    shared = same_tokenizer(teacher_tokenizer, student_tokenizer)
    if not shared and recipe.distill.hidden_weight > 0:
        raise HftkError(
            "distill.hidden_weight needs teacher and student to share a tokenizer (hidden states are matched token by token); "
            "set distill.hidden_weight=0 or use a student with the teacher's tokenizer"
        )
    if not shared and recipe.task in ("ner", "qa"):
        raise HftkError(f"{recipe.task} distillation matches outputs token by token: teacher and student must share a tokenizer")
    proposer = load_proposer(recipe.augment.mlm, teacher_path) if recipe.augment.copies else None
    with tempfile.TemporaryDirectory(prefix="hftk-student-") as scratch:
        if student.name_or_path:
            folder = student.name_or_path
        elif student.layers:
            folder = str(write_layer_selection(teacher, list(student.layers), teacher_tokenizer, Path(scratch)))
        else:
            torch.manual_seed(recipe.training.seed)  # a fresh student's random init is the seed's, run after run
            folder = str(write_fresh_student(dict(student.config), teacher_tokenizer, recipe.data.max_seq_length, Path(scratch)))
        run_recipe = recipe.model_copy(update={"model": recipe.model.model_copy(update={"name_or_path": folder})})
        distiller = Distiller(recipe, teacher, teacher_tokenizer, student_tokenizer, folder, proposer)
        return finetune(run_recipe, resume=resume, distiller=distiller)
