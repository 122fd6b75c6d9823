"""`hftk finetune TASK` and `hftk evaluate TASK`: a task's data, a model head, LoRA, the shared loop.

Works for hftk's own models and for any transformers checkpoint folder (e.g. a BERT), as
users of the HF example scripts expect: the head comes from the task's Auto class, metrics
come from hftk's offline `evaluate` modules, and `metrics.json` uses `eval_*` keys.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers import AutoConfig, PreTrainedModel

from hftk.data.tokenizer import load_tokenizer
from hftk.errors import HftkError
from hftk.lora import apply_lora, fresh_modules, save_lora_outputs
from hftk.models.loading import describe_loading, quiet_load_report
from hftk.models import MODEL_TYPES
from hftk.recipe import FinetuneRecipe, dump_recipe, model_source
from hftk.recipe.tasks import SEQ2SEQ_TASKS, TASKS
from hftk.reporting.run_folder import finish_run
from hftk.training.distributed import check_fsdp_wrappable, full_state_dict, is_sharded, load_full_state_dict
from hftk.training.outputs import prepare_output_dir, removes_new_output_dir_on_error, write_model_folder
from hftk.tasks import TaskData
from hftk.tasks.build import build_task
from hftk.tasks.fresh_model import build_fresh_head, fresh_tokenizer_and_config
from hftk.tasks.generation import decode_generated, prepare_generation_inputs
from hftk.tasks.seq2seq import check_generation_fits, generate_texts, label_smoothed_loss, require_seq2seq_model
from hftk.training.loop import TrainingHooks
from hftk.training.session import end_session, run_training, start_session
from hftk.training.reinit import check_reinit, reinit_top_layers


def load_model_config(path: str):
    """The checkpoint's config, with errors that name the real problem (no folder, bad JSON, no weights)."""
    folder = Path(path)
    if folder.exists():
        if not folder.is_dir():
            raise HftkError(f"--model {path} is a file: point --model at a saved model folder")
        if not (folder / "config.json").is_file():
            raise HftkError(f"model folder {path} has no config.json: point --model at a saved model folder")
        try:
            json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            raise HftkError(
                f"{folder / 'config.json'} is not valid JSON ({str(error).splitlines()[0]}): the folder is damaged; "
                "save the model again or point --model at another folder"
            ) from None
        check_safetensors(folder)
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as error:
        if not folder.exists():
            raise HftkError(
                f"--model {path}: no such folder, and no model of that name could be loaded from the Hub "
                f"({type(error).__name__}); check the path (e.g. run `hftk pretrain` first to get runs/pretrain-default)"
            ) from None
        raise HftkError(f"cannot read the model config at {path}: {str(error).splitlines()[0]}") from None


def check_safetensors(folder: Path) -> None:
    """Open every weights file's header: a truncated or damaged file fails here, not after the data is prepared."""
    from safetensors import SafetensorError, safe_open

    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except (SafetensorError, OSError) as error:
            raise HftkError(
                f"{file} is damaged ({str(error).splitlines()[0]}); it was perhaps cut short by a full disk or an "
                "interrupted copy: save or copy the model again"
            ) from None


def check_model_config_overrides(recipe: FinetuneRecipe, config) -> None:
    """`--set model.config.KEY=VALUE`: a field the config has, with a value its class accepts."""
    unknown = sorted(key for key in recipe.model.config if not hasattr(config, key))
    if unknown:
        from hftk.recipe import did_you_mean

        raise HftkError(
            f"model.config.{', model.config.'.join(unknown)}: not a field of {type(config).__name__} "
            f"({recipe.model.name_or_path}){did_you_mean(unknown[0], config.to_dict(), 'model.config.')}; "
            "see its config.json for the fields"
        )
    if recipe.model.config:
        try:  # from_pretrained(**kwargs) sets overrides after the class's checks; run them here
            type(config).from_dict({**config.to_dict(), **recipe.model.config})
        except (ValueError, TypeError) as error:
            raise HftkError(f"--set model.config: {str(error).splitlines()[0]}") from None


# data.max_seq_length left null: the task's default (hftk.recipe.tasks), before the model's own
# limit; QA windows overlap by doc_stride, at most 128 (run_qa's default for 384).
MAX_QUESTION_LENGTH = 64  # tokens of a question kept in a QA window (hftk.tasks.qa's default)


def model_max_length(config, tokenizer) -> int | None:
    """The longest input the model takes: its positions (config.json), else the tokenizer's limit.

    The tokenizer's `model_max_length` is a truncation default, not a fact about the model: a
    tokenizer saved by a pretraining run on 32-token blocks must not cap a model with 256 positions.
    It counts only for models whose config has no position limit (T5's relative positions).
    """
    def valid(limit) -> bool:
        return isinstance(limit, int) and 0 < limit < 1_000_000

    positions = [getattr(config, name, None) for name in ("max_position_embeddings", "n_positions")]
    positions = [limit for limit in positions if valid(limit)]
    if positions:
        return min(positions)
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if valid(limit) else None


def resolve_sequence_lengths(recipe: FinetuneRecipe, config, tokenizer) -> str | None:
    """Fill data.max_seq_length / doc_stride left null from the model; refuse values it cannot take.

    Returns a line saying what was derived (the run prints it), or None if nothing was.
    """
    data, limit = recipe.data, model_max_length(config, tokenizer)
    derived = []
    if data.max_seq_length is None:
        default = TASKS[recipe.task].default_max_seq_length
        data.max_seq_length = min(default, limit) if limit else default
        why = f"the model takes {limit} tokens" if limit and limit < default else f"the {recipe.task} default"
        derived.append(f"data.max_seq_length={data.max_seq_length} ({why})")
    elif limit and data.max_seq_length > limit:
        raise HftkError(
            f"data.max_seq_length ({data.max_seq_length}) exceeds what the model at {recipe.model.name_or_path} takes "
            f"({limit} tokens); use at most {limit}, or leave it unset to use {limit}"
        )
    if recipe.task == "qa":
        room = data.max_seq_length - tokenizer.num_special_tokens_to_add(pair=True) - MAX_QUESTION_LENGTH
        if room < 2:
            fix = f"raise data.max_seq_length (the model takes up to {limit})" if limit and limit > data.max_seq_length else "use a model with more positions"
            raise HftkError(
                f"data.max_seq_length ({data.max_seq_length}) leaves no room for context after a question of up to "
                f"{MAX_QUESTION_LENGTH} tokens; {fix}"
            )
        if data.doc_stride is None:
            data.doc_stride = min(128, room // 2)
            derived.append(f"data.doc_stride={data.doc_stride} (half the {room} context tokens of a window)")
        elif data.doc_stride >= room:
            raise HftkError(
                f"data.doc_stride ({data.doc_stride}) must be smaller than the context room of a window ({room} = "
                f"max_seq_length {data.max_seq_length} - special tokens - question {MAX_QUESTION_LENGTH}): "
                f"use at most {room - 1}, or leave it unset to use {min(128, room // 2)}"
            )
    return ", ".join(derived) or None


def load_model_and_tokenizer(recipe: FinetuneRecipe, resume_folder: Path | None = None, echo=print):
    """The tokenizer and config to fine-tune: a checkpoint's, a random twin's (its folder's) or a fresh model's."""
    if not recipe.model.name_or_path:
        raise HftkError(
            "no model to fine-tune: pass --model PATH (a folder from `hftk pretrain` or any checkpoint), "
            "--model new (a fresh model, the recipe's model.new) or --model random:PATH (PATH's random-init twin)"
        )
    kind, path = model_source(recipe.model.name_or_path)
    if kind == "new":
        return fresh_tokenizer_and_config(recipe, resume_folder, echo)
    config = load_model_config(path)
    check_model_config_overrides(recipe, config)
    tokenizer = load_tokenizer(path)
    if len(tokenizer) > config.vocab_size:
        raise HftkError(
            f"tokenizer at {path} has {len(tokenizer)} tokens but the model's vocabulary is {config.vocab_size}: "
            "use the tokenizer saved with this model"
        )
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # decoders: pad with EOS, masked out by attention_mask
    limit = model_max_length(config, tokenizer)
    if limit is not None and tokenizer.model_max_length != limit:
        tokenizer.model_max_length = limit  # truncation follows the model's positions, and the saved tokenizer says so
    return tokenizer, config


# The peak fine-tuning learning rate when a recipe leaves `training.learning_rate` null.
# The encoders hftk pretrains (pre-LN, a few million parameters, pretrained at a peak of 1e-3)
# move too little at BERT-base's 1e-4 within a fine-tuning budget: a head alone barely leaves
# ln(num_labels), and a body that left pretraining near the masked-LM plateau (almost the same
# state for every token, small gradients) stays there, so it fine-tuned below its random twin,
# whose random features a head can use at once (benchmarks/RESULTS-quality-shared.md).
# Post-LN checkpoints (BERT, GPT-2, `hftk convert` output) keep 1e-4.
PRE_LN_HFTK_LEARNING_RATE = 3e-4
DEFAULT_LEARNING_RATE = 1e-4


def default_learning_rate(config) -> float:
    """The peak learning rate that fits this checkpoint: higher for hftk's own pre-LN models."""
    if config.model_type in MODEL_TYPES and getattr(config, "pre_norm", False):
        return PRE_LN_HFTK_LEARNING_RATE
    return DEFAULT_LEARNING_RATE


def build_head(recipe: FinetuneRecipe, task: TaskData, config) -> tuple[PreTrainedModel, list[str]]:
    """The task's Auto model on the checkpoint, and the modules it had to initialise (a new head, BERT's pooler)."""
    from hftk.quantize import is_quantized_folder, load_quantized

    folder = Path(recipe.model.name_or_path)
    if folder.is_dir() and any(folder.glob("*.onnx")) and not any(folder.glob("*.safetensors")):
        raise HftkError(
            f"{folder} holds an ONNX graph, which runs in ONNX Runtime, not here: give hftk the fp32 folder, "
            "or an int8 one from `hftk quantize --format torchao`"
        )
    if is_quantized_folder(recipe.model.name_or_path):  # `hftk quantize` output: int8, evaluation only
        model = load_quantized(recipe.model.name_or_path)
        # The class the task's Auto class builds for this config (an encoder-decoder's is ...ForConditionalGeneration)
        mapping = getattr(transformers, task.auto_model_class)._model_mapping
        fits = type(model.config) in mapping and mapping[type(model.config)] is type(model)
        return model, [] if fits else [f"{task.auto_model_class.removeprefix('AutoModel')} head"]
    auto_class = getattr(transformers, task.auto_model_class)
    unknown = sorted(key for key in recipe.model.config if not hasattr(config, key))
    if unknown:
        raise HftkError(
            f"model.config.{', model.config.'.join(unknown)}: not a field of {type(config).__name__} "
            f"({recipe.model.name_or_path}); see its config.json for the fields"
        )
    kwargs: dict[str, Any] = {**recipe.model.config, "attn_implementation": recipe.model.attn_implementation}
    if task.kind in ("sequence_classification", "token_classification"):
        kwargs["num_labels"] = task.num_labels
        if task.id2label is not None:  # regression has none; passing None would unset num_labels
            kwargs.update(id2label=task.id2label, label2id=task.label2id)
    if task.kind == "sequence_classification" and task.problem_type:
        kwargs["problem_type"] = task.problem_type
    if config.pad_token_id is None and task.kind == "sequence_classification":
        kwargs["pad_token_id"] = config.eos_token_id
    if model_source(recipe.model.name_or_path)[0] != "checkpoint":  # --model new or random:FOLDER: fresh weights
        attn = kwargs.pop("attn_implementation")
        return build_fresh_head(auto_class, config, kwargs, attn), [f"all weights ({task.auto_model_class} from scratch)"]
    try:
        with quiet_load_report():  # said in one line below instead of transformers' table
            model, info = auto_class.from_pretrained(recipe.model.name_or_path, output_loading_info=True, **kwargs)
    except ValueError as error:
        raise HftkError(f"cannot build a {task.auto_model_class} from {recipe.model.name_or_path}: {error}") from error
    summary = describe_loading(recipe.model.name_or_path, info)
    if summary:
        from accelerate import PartialState

        if PartialState().is_main_process:
            print(summary)
    return model, fresh_modules(info)


class Evaluator:
    """Run every eval split; turn model outputs into the task's metrics (`eval_*` keys)."""

    def __init__(self, recipe: FinetuneRecipe, task: TaskData, tokenizer, accelerator: Accelerator) -> None:
        self.recipe, self.task, self.tokenizer, self.accelerator = recipe, task, tokenizer, accelerator
        batch_size = recipe.training.per_device_eval_batch_size
        self.loaders = {
            split: accelerator.prepare(DataLoader(ds, batch_size=batch_size, collate_fn=task.collator))
            for split, ds in task.eval.items()
        }
        self.last_predictions: dict[str, Any] = {}

    def __call__(self, model) -> dict[str, float]:
        model.eval()
        results: dict[str, float] = {}
        for index, (split, loader) in enumerate(self.loaders.items()):
            prefix = "eval_" if index == 0 else f"eval_{split}_"
            loss, outputs = self._forward(model, loader)
            metrics = {} if loss is None else {"loss": loss}
            if self.task.kind in ("causal_lm", "seq2seq_lm"):
                metrics["perplexity"] = math.exp(min(loss, 50.0)) if loss is not None else float("nan")
                outputs = self._generate(model, split) if self.task.kind == "causal_lm" else self._generate_seq2seq(model, split)
            self.last_predictions[split] = outputs
            metrics.update(self.task.compute_metrics(split, outputs))
            # How many examples the scores are over: what a report needs for their standard error.
            metrics["samples"] = len(self.task.eval_examples.get(split, self.task.eval[split]))
            results.update({f"{prefix}{k}": v for k, v in metrics.items()})
        return results

    @torch.no_grad()
    def _forward(self, model, loader) -> tuple[float | None, Any]:
        """Mean loss and the gathered outputs (gathered per batch, as `gather_for_metrics` requires)."""
        total_loss, count, starts, ends, logits = 0.0, 0, [], [], []
        for batch in loader:
            out = model(**batch)
            if out.loss is not None:
                size = batch["input_ids"].shape[0]
                total_loss += float(out.loss) * size
                count += size
            if self.task.kind == "question_answering":
                starts.append(self._gather(out.start_logits))
                ends.append(self._gather(out.end_logits))
            elif self.task.kind not in ("causal_lm", "seq2seq_lm"):
                logits.append(self._gather(out.logits))
        if count and self.accelerator.num_processes > 1:  # every process saw its own part of the split
            sums = torch.tensor([total_loss, count], dtype=torch.float64, device=self.accelerator.device)
            total_loss, count = self.accelerator.reduce(sums, reduction="sum").tolist()
        loss = total_loss / count if count else None
        if self.task.kind == "question_answering":
            return loss, (concat_padded(starts), concat_padded(ends))
        if self.task.kind in ("causal_lm", "seq2seq_lm"):
            return loss, None
        return loss, concat_padded(logits)

    def _gather(self, tensor: torch.Tensor) -> np.ndarray:
        if tensor.ndim >= 2 and self.task.kind != "sequence_classification":
            tensor = self.accelerator.pad_across_processes(tensor, dim=1)
        return self.accelerator.gather_for_metrics(tensor.float().contiguous()).cpu().numpy()

    @torch.no_grad()
    def _generate(self, model, split: str) -> list[str]:
        settings = self.recipe.generation
        model = self.accelerator.unwrap_model(model)
        prompts = self.task.eval_examples[split]["prompt_input_ids"]
        texts: list[str] = []
        pad = self.tokenizer.pad_token_id
        batch_size = self.recipe.training.per_device_eval_batch_size
        for start in range(0, len(prompts), batch_size):
            inputs = prepare_generation_inputs(prompts[start : start + batch_size], pad)
            inputs = {k: v.to(self.accelerator.device) for k, v in inputs.items()}
            sequences = model.generate(
                **inputs,
                max_new_tokens=settings.max_new_tokens,
                num_beams=settings.num_beams,
                do_sample=settings.do_sample,
                temperature=settings.temperature if settings.do_sample else None,
                top_p=settings.top_p if settings.do_sample else None,
                pad_token_id=pad,
                eos_token_id=self.tokenizer.eos_token_id,
                synced_gpus=is_sharded(self.accelerator),  # sharded forwards are collective: step in lockstep
            )
            texts.extend(decode_generated(self.tokenizer, sequences, inputs["input_ids"].shape[1]))
        return texts


    def _generate_seq2seq(self, model, split: str) -> list[str]:
        return generate_texts(
            self.accelerator.unwrap_model(model), self.tokenizer, self.task.eval_examples[split]["source_input_ids"],
            self.recipe.generation, batch_size=self.recipe.training.per_device_eval_batch_size,
            device=self.accelerator.device, synced_gpus=is_sharded(self.accelerator),
        )


def check_task_fits_model(recipe: FinetuneRecipe, config, tokenizer) -> None:
    """Task/model mismatches found before any data is read: seq2seq tasks need an encoder–decoder."""
    smoothing = recipe.training.label_smoothing_factor
    if recipe.task in SEQ2SEQ_TASKS:
        require_seq2seq_model(config, recipe.task, recipe.model.name_or_path)
        check_generation_fits(recipe.generation.max_new_tokens, model_max_length(config, tokenizer))
    elif smoothing and recipe.task != "generation":
        raise HftkError(
            f"training.label_smoothing_factor ({smoothing}) applies to translation, summarization and generation, "
            f"not {recipe.task}; remove it"
        )


def train_order(task: TaskData, training) -> dict[str, Any]:
    """The training loader's order: shuffled, or grouped by length (`training.group_by_length`)."""
    if not training.group_by_length:
        return {"shuffle": True}
    from hftk.training.length_grouping import EpochSeededLengthGroupedSampler, example_lengths

    lengths = example_lengths(task.train)
    return {"sampler": EpochSeededLengthGroupedSampler(training.per_device_train_batch_size, lengths, training.seed)}


def concat_padded(arrays: list[np.ndarray]) -> np.ndarray:
    """Concatenate batch outputs; token-level outputs are zero-padded to the longest sequence."""
    if arrays and arrays[0].ndim >= 2:
        length = max(a.shape[1] for a in arrays)
        arrays = [np.pad(a, [(0, 0), (0, length - a.shape[1])] + [(0, 0)] * (a.ndim - 2)) for a in arrays]
    return np.concatenate(arrays) if arrays else np.zeros((0,))


@removes_new_output_dir_on_error
def finetune(recipe: FinetuneRecipe, *, resume: bool = False, distiller: Any = None) -> Path:
    """Fine-tune a model on a task; return the output folder (`hftk evaluate` is `hftk.commands.evaluate`).

    `distiller` (see `hftk.commands.distill.Distiller`) turns this into distillation with the same data,
    loop and outputs: `check(task, config)` runs before anything is written, `attach(model, task,
    accelerator)` caches the teacher's outputs and returns the module to train, `unwrap(model)` the
    model to save; `metrics`, `recipe_yaml` and `base_model` fill the run folder.
    """
    session_start = time.perf_counter()
    output_dir = Path(recipe.output.output_dir)
    accelerator = start_session(recipe.training, output_dir, dump_recipe(recipe))
    if recipe.lora.r > 0 and is_sharded(accelerator):
        raise HftkError("LoRA (lora.r > 0) under FSDP is not supported: fine-tune LoRA without the FSDP config")
    tokenizer, config, task = load_task(recipe, accelerator, evaluate_only=False, resume=resume)
    if distiller is not None:
        distiller.check(task, config)
    recipe_yaml = distiller.recipe_yaml if distiller is not None else dump_recipe(recipe)  # what --resume compares
    resume_from = prepare_output_dir(
        output_dir, overwrite=recipe.output.overwrite, resume=resume, accelerator=accelerator, recipe_yaml=recipe_yaml
    )
    set_seed(recipe.training.seed)
    model, _ = build_task_model(recipe, task, config, accelerator, evaluate_only=False)
    evaluator = Evaluator(recipe, task, tokenizer, accelerator)
    unwrap = distiller.unwrap if distiller is not None else (lambda module: module)
    if distiller is not None:
        model = distiller.attach(model, task, accelerator)
    model, state = train_on_task(recipe, task, tokenizer, model, evaluator, unwrap, accelerator, resume_from, session_start)
    final, best_record = ship_best_model(recipe, model, state, evaluator, unwrap, accelerator)
    metrics = finetune_metrics(recipe, state, best_record, task, evaluator, tokenizer, model, final, accelerator, distiller)
    write_finetuned_folder(recipe, final, model, state, metrics, task, evaluator, tokenizer, accelerator, distiller)
    end_session(accelerator)
    return output_dir


def load_task(recipe: FinetuneRecipe, accelerator: Accelerator, *, evaluate_only: bool, resume: bool = False) -> tuple[Any, Any, TaskData]:
    """(tokenizer, config, task data) of the recipe's model and task, with every check that needs no model weights.

    Sequence lengths and (training) the learning rate left null are derived from the model here.
    Evaluation reads the label set from the model, not from training data that may be absent.
    """
    training = recipe.training
    if evaluate_only and model_source(recipe.model.name_or_path)[0] != "checkpoint":
        raise HftkError(
            f"--model {recipe.model.name_or_path} has no trained weights to evaluate: evaluate a folder written by "
            f"`hftk finetune {recipe.task}`"
        )
    resume_folder = resume_tokenizer_folder(Path(recipe.output.output_dir), resume)
    tokenizer, config = load_model_and_tokenizer(recipe, resume_folder, accelerator.print)
    check_task_fits_model(recipe, config, tokenizer)
    check_reinit(config, recipe.model.reinit_top_layers)
    derived = resolve_sequence_lengths(recipe, config, tokenizer)
    if derived:
        accelerator.print(f"derived from the model: {derived}")
    if training.learning_rate is None and not evaluate_only:
        training.learning_rate = default_learning_rate(config)
        accelerator.print(
            f"learning rate {training.learning_rate:g}: the default for {config.model_type} "
            f"({'pre' if getattr(config, 'pre_norm', False) else 'post'}-LN) checkpoints; --set training.learning_rate=... to change"
        )
    with accelerator.main_process_first():
        task = build_task(recipe, tokenizer, config if evaluate_only else None)
    if evaluate_only and task.num_labels is not None and task.num_labels != config.num_labels:
        raise HftkError(
            f"the model at {recipe.model.name_or_path} has {config.num_labels} labels but {recipe.task} "
            f"{recipe.data.glue_task or ''} needs {task.num_labels}: evaluate a model fine-tuned on this task"
        )
    if not task.eval:
        raise HftkError("no evaluation data: pass data.validation_file (or a Hub data set with a validation split)")
    if not evaluate_only and task.train is None:
        raise HftkError("no training data: pass data.train_file (or a Hub data set with a train split)")
    return tokenizer, config, task


def build_task_model(recipe: FinetuneRecipe, task: TaskData, config, accelerator: Accelerator, *, evaluate_only: bool):
    """The task's model on the checkpoint: re-initialised top layers and LoRA when training; (model, new modules).

    Evaluation refuses a model whose task head would be random.
    """
    model, new_modules = build_head(recipe, task, config)
    if recipe.model.reinit_top_layers and not evaluate_only:
        redrawn = reinit_top_layers(model, recipe.model.reinit_top_layers)
        accelerator.print(f"re-initialised before fine-tuning (model.reinit_top_layers): {', '.join(redrawn)}")
    if evaluate_only and new_modules:
        raise HftkError(
            f"the model at {recipe.model.name_or_path} has no trained {recipe.task} head "
            f"({', '.join(new_modules)} would be random): fine-tune it first with `hftk finetune {recipe.task}`"
        )
    if task.kind == "seq2seq_lm":
        task.collator.model = model  # DataCollatorForSeq2Seq: decoder_input_ids from the labels, the model's way
    if recipe.lora.r > 0 and not evaluate_only:
        model = apply_lora(model, recipe.lora, task.kind, new_modules)
    check_fsdp_wrappable(accelerator, model)
    return model, new_modules


def train_on_task(recipe, task, tokenizer, model, evaluator, unwrap, accelerator, resume_from, session_start):
    """The shared loop on the task's training set, selecting by the task's main metric unless the recipe names one."""
    training, output_dir = recipe.training, Path(recipe.output.output_dir)
    if training.metric_for_best_model is None:
        training.metric_for_best_model = f"eval_{task.main_metric}"
        training.greater_is_better = task.greater_is_better
    train_loader = DataLoader(
        task.train, batch_size=training.per_device_train_batch_size, collate_fn=task.collator, **train_order(task, training)
    )

    def save_model(model, folder: Path, state_dict: dict | None = None) -> None:
        write_model_folder(unwrap(model), tokenizer, folder, state_dict)

    def load_model(model, folder: Path) -> None:  # resume: the weights of the model save_model wrote (a distiller's student)
        from hftk.training.checkpoint import load_model_weights

        load_model_weights(unwrap(model), folder)

    hooks = TrainingHooks(
        save_model=save_model,
        load_model=load_model,
        evaluate=evaluator,
        compute_loss=(
            label_smoothed_loss(training.label_smoothing_factor, causal=task.kind == "causal_lm") if training.label_smoothing_factor else None
        ),
    )
    return run_training(
        accelerator, model, train_loader, recipe, output_dir, hooks, resume=resume_from is not None, session_start=session_start
    )


def ship_best_model(recipe, model, state, evaluator, unwrap, accelerator):
    """The model to save: the best evaluation's weights when an earlier step won; (model, its evaluation record).

    The evaluator runs once more on it, so predictions.jsonl is the shipped model's.
    """
    training, output_dir = recipe.training, Path(recipe.output.output_dir)
    final = unwrap(accelerator.unwrap_model(model))
    best_record = next((r for r in state.log_history if r["step"] == state.best_step and training.metric_for_best_model in r), None)
    if best_record is not None and state.best_step != state.step and (output_dir / "best").is_dir():
        if is_sharded(accelerator):  # every rank loads its shard of the best weights
            from hftk.training.checkpoint import read_safetensors

            load_full_state_dict(model, read_safetensors(output_dir / "best"))
            evaluator(model)
        else:
            final = load_best(final, output_dir / "best")
            evaluator(accelerator.prepare(final))  # predictions of the model we ship
    else:
        best_record = next((r for r in reversed(state.log_history) if training.metric_for_best_model in r), {})
    return final, best_record


def finetune_metrics(recipe, state, best_record, task, evaluator, tokenizer, model, final, accelerator, distiller) -> dict[str, Any]:
    """metrics.json: the selected evaluation's `eval_*`, the run's counters, `test_*` when a test file is given."""
    metrics = {k: v for k, v in best_record.items() if k.startswith("eval_")}
    metrics.update(
        {
            "best_step": state.best_step,
            "train_steps": state.step,
            "train_loss": next((r["loss"] for r in reversed(state.log_history) if "loss" in r), None),
            "train_runtime_seconds": state.elapsed_seconds,
            "wall_time_seconds": state.wall_seconds,
            "train_planned_steps": state.planned_steps,
            "train_stopped_by": state.stopped_by,
            "tokens_seen": state.tokens_seen,
        }
    )
    metrics.update(metric_info(task, evaluator))
    if distiller is not None:
        metrics.update(distiller.metrics)
    if recipe.data.test_file:
        metrics.update(evaluate_test_file(recipe, tokenizer, model if is_sharded(accelerator) else final, accelerator))
    return metrics


def write_finetuned_folder(recipe, final, model, state, metrics, task, evaluator, tokenizer, accelerator, distiller) -> None:
    """The run folder (model or LoRA adapter, predictions, metrics last), written by the main process."""
    output_dir = Path(recipe.output.output_dir)
    weights = full_state_dict(accelerator, model)  # FSDP: gathered from every rank, before rank 0 writes
    if not accelerator.is_main_process:
        return
    if recipe.lora.r > 0:
        final = save_lora_outputs(final, output_dir, recipe.lora)
    write_predictions(output_dir, task, evaluator, tokenizer, staging=True)
    finish_run(
        output_dir,
        model=final,
        tokenizer=tokenizer,
        recipe_yaml=distiller.recipe_yaml if distiller is not None else dump_recipe(recipe),
        metrics=metrics,
        log_history=state.log_history,
        state_dict=weights,
        # data and licence: read from recipe.yaml
        card={"base_model": distiller.base_model if distiller is not None else from_checkpoint(recipe)},
    )
    (output_dir / "all_results.json").write_text(json.dumps(metrics, indent=2) + "\n")
    drop_resume_state(output_dir)


def evaluate_test_file(recipe: FinetuneRecipe, tokenizer, model: PreTrainedModel, accelerator: Accelerator) -> dict[str, float]:
    """Score the model we ship on `data.test_file`, which took no part in model selection: `test_*` keys.

    The validation file picks the best checkpoint, so its score is optimistic; the test file
    gives the number to report (as `--do_predict` does in the HF example scripts).
    """
    data = recipe.data.model_copy(
        update={"train_file": None, "validation_file": recipe.data.test_file, "dataset_name": None, "max_eval_samples": None}
    )
    test_recipe = recipe.model_copy(update={"data": data})
    with accelerator.main_process_first():
        task = build_task(test_recipe, tokenizer, model.config)
    prepared = model if is_sharded(accelerator) else accelerator.prepare(model)  # FSDP: already sharded
    evaluator = Evaluator(test_recipe, task, tokenizer, accelerator)
    metrics = {"test_" + key.removeprefix("eval_"): value for key, value in evaluator(prepared).items()}
    return {**metrics, **{f"test_{key}": value for key, value in metric_info(task, evaluator).items()}}


def metric_info(task: TaskData, evaluator: Evaluator) -> dict[str, Any]:
    """The task's non-numeric facts about the first split's scores (SacreBLEU signatures), if it has any."""
    split = next(iter(task.eval))
    if task.metric_info is None or split not in evaluator.last_predictions:
        return {}
    return task.metric_info(split, evaluator.last_predictions[split])


def from_checkpoint(recipe: FinetuneRecipe) -> str | None:
    """The checkpoint the run started from (the model card's base_model); None for --model new and random:FOLDER."""
    kind, path = model_source(recipe.model.name_or_path)
    return path if kind == "checkpoint" else None


def resume_tokenizer_folder(output_dir: Path, resume: bool) -> Path | None:
    """The model folder of the checkpoint a --resume continues from: a fresh model keeps the tokenizer it trained."""
    from hftk.training.checkpoint import latest_checkpoint

    checkpoint = latest_checkpoint(output_dir) if resume else None
    return checkpoint / "model" if checkpoint is not None and (checkpoint / "model").is_dir() else None


def load_best(model: PreTrainedModel, folder: Path) -> PreTrainedModel:
    """Load the best evaluation's weights into the trained model (a LoRA model gets its adapter back)."""
    from hftk.training.checkpoint import load_model_weights

    load_model_weights(model, folder)
    return model


def drop_resume_state(output_dir: Path) -> None:
    """A finished fine-tuning run keeps its model once: checkpoints only serve --resume (which a
    finished run refuses) and `best/` is what the folder root now holds."""
    import shutil

    from hftk.training.checkpoint import checkpoints_dir

    shutil.rmtree(checkpoints_dir(output_dir), ignore_errors=True)
    shutil.rmtree(output_dir / "best", ignore_errors=True)



def write_predictions(output_dir: Path, task: TaskData, evaluator: Evaluator, tokenizer, staging: bool = False) -> None:
    """`predictions.jsonl` for the first eval split: one record per example."""
    split = next(iter(task.eval))
    outputs = evaluator.last_predictions.get(split)
    if outputs is None:
        return
    records = task.predictions(split, outputs) if task.predictions is not None else []
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "predictions.jsonl"
    tmp = path.with_name(".predictions.jsonl.tmp")
    with tmp.open("w") as handle:
        for record in records:
            handle.write(json.dumps(record, default=str) + "\n")
    tmp.replace(path)
