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
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers import AutoConfig, PreTrainedModel

from hftk.data.tokenizer import load_tokenizer
from hftk.errors import HftkError
from hftk.lora import apply_lora, save_lora_outputs
from hftk.pretrain import flat_config
from hftk.recipe import FinetuneRecipe, dump_recipe
from hftk.run_outputs import finish_run, prepare_output_dir, write_model_folder
from hftk.tasks import TaskData, get_task
from hftk.tasks.generation import decode_generated, prepare_generation_inputs
from hftk.training.loop import TrainingHooks, train


def model_labels(config) -> list[str]:
    """The label names of a fine-tuned head, by id (what `hftk evaluate` must score against)."""
    return [config.id2label[i] for i in range(config.num_labels)]


def build_task(recipe: FinetuneRecipe, tokenizer, config=None) -> TaskData:
    """Call the task's `prepare_*` with the recipe's data options.

    With `config` (evaluation of a fine-tuned model) the label set is the model's own, not one
    re-read from training data that may be absent or ordered differently.
    """
    data = recipe.data
    common = dict(
        train_file=data.train_file,
        validation_file=data.validation_file,
        max_train_samples=data.max_train_samples,
        max_eval_samples=data.max_eval_samples,
    )
    hub = dict(dataset_name=data.dataset_name, dataset_config=data.dataset_config)
    if recipe.task == "glue":
        if not data.glue_task:
            raise HftkError("GLUE needs a task: --task cola|sst2|mrpc|qqp|stsb|mnli|qnli|rte|wnli (or data.glue_task)")
        return get_task("glue")(data.glue_task, tokenizer, max_seq_length=data.max_seq_length, **common)
    if recipe.task == "classification":
        labels = {}
        if config is not None:
            from hftk.tasks.classification import REGRESSION, SINGLE, LabelSpace

            problem_type = config.problem_type or (REGRESSION if config.num_labels == 1 else SINGLE)
            names = () if problem_type == REGRESSION else tuple(model_labels(config))
            labels["label_space"] = LabelSpace(problem_type, names, {n: i for i, n in enumerate(names)} or None)
        return get_task("classification")(
            tokenizer,
            **hub,
            **common,
            text_column=data.text_column or "text",
            text_pair_column=data.text_pair_column,
            label_column=data.label_column,
            max_seq_length=data.max_seq_length,
            **labels,
        )
    if recipe.task == "qa":
        return get_task("qa")(
            tokenizer,
            **hub,
            **common,
            version_2_with_negative=data.version_2_with_negative,
            max_seq_length=data.max_seq_length,
            doc_stride=data.doc_stride,
            n_best_size=data.n_best_size,
            max_answer_length=data.max_answer_length,
            null_score_diff_threshold=data.null_score_diff_threshold,
        )
    if recipe.task == "ner":
        return get_task("ner")(
            tokenizer,
            **hub,
            **common,
            tokens_column=data.tokens_column,
            tags_column=data.tags_column,
            label_all_tokens=data.label_all_tokens,
            max_seq_length=data.max_seq_length,
            label_names=model_labels(config) if config is not None else None,
        )
    extra = {"prompt_template": data.prompt_template} if data.prompt_template else {}
    return get_task("generation")(
        tokenizer,
        **hub,
        **common,
        source_column=data.source_column,
        target_column=data.target_column,
        max_seq_length=data.max_seq_length,
        max_new_tokens=recipe.generation.max_new_tokens,
        **extra,
    )


def load_model_and_tokenizer(recipe: FinetuneRecipe):
    """The tokenizer and checkpoint of `model.name_or_path`, with clear errors for bad folders."""
    path = recipe.model.name_or_path
    if not path:
        raise HftkError("no model to fine-tune: pass --model PATH (a folder from `hftk pretrain` or any checkpoint)")
    if Path(path).exists() and not (Path(path) / "config.json").is_file():
        raise HftkError(f"model folder {path} has no config.json: point --model at a saved model folder")
    tokenizer = load_tokenizer(path)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise HftkError(f"cannot read the model config at {path}: {str(error).splitlines()[0]}") from error
    if len(tokenizer) > config.vocab_size:
        raise HftkError(
            f"tokenizer at {path} has {len(tokenizer)} tokens but the model's vocabulary is {config.vocab_size}: "
            "use the tokenizer saved with this model"
        )
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # decoders: pad with EOS, masked out by attention_mask
    return tokenizer, config


def build_head(recipe: FinetuneRecipe, task: TaskData, config) -> tuple[PreTrainedModel, list[str]]:
    """The task's Auto model on the checkpoint, and the modules it had to initialise (a new head, BERT's pooler)."""
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
    try:
        model, info = auto_class.from_pretrained(recipe.model.name_or_path, output_loading_info=True, **kwargs)
    except ValueError as error:
        raise HftkError(f"cannot build a {task.auto_model_class} from {recipe.model.name_or_path}: {error}") from error
    new_modules = sorted({key.rsplit(".", 1)[0] for key in info["missing_keys"]})
    return model, new_modules


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
            if self.task.kind == "causal_lm":
                metrics["perplexity"] = math.exp(min(loss, 50.0)) if loss is not None else float("nan")
                outputs = self._generate(model, split)
            self.last_predictions[split] = outputs
            metrics.update(self.task.compute_metrics(split, outputs))
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
            elif self.task.kind != "causal_lm":
                logits.append(self._gather(out.logits))
        loss = total_loss / count if count else None
        if self.task.kind == "question_answering":
            return loss, (concat_padded(starts), concat_padded(ends))
        if self.task.kind == "causal_lm":
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
            )
            texts.extend(decode_generated(self.tokenizer, sequences, inputs["input_ids"].shape[1]))
        return texts


def concat_padded(arrays: list[np.ndarray]) -> np.ndarray:
    """Concatenate batch outputs; token-level outputs are zero-padded to the longest sequence."""
    if arrays and arrays[0].ndim >= 2:
        length = max(a.shape[1] for a in arrays)
        arrays = [np.pad(a, [(0, 0), (0, length - a.shape[1])] + [(0, 0)] * (a.ndim - 2)) for a in arrays]
    return np.concatenate(arrays) if arrays else np.zeros((0,))


def finetune(recipe: FinetuneRecipe, *, resume: bool = False, evaluate_only: bool = False) -> Path:
    """Fine-tune (or only evaluate) a model on a task; return the output folder."""
    session_start = time.perf_counter()
    training = recipe.training
    output_dir = Path(recipe.output.output_dir)
    if training.num_threads:
        torch.set_num_threads(training.num_threads)
    accelerator = Accelerator(
        mixed_precision=training.mixed_precision,
        log_with=(training.report_to or None) if not evaluate_only else None,
        project_dir=str(output_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    tokenizer, config = load_model_and_tokenizer(recipe)
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
    if evaluate_only:  # writes metrics/predictions beside whatever is there; never clears the folder
        resume_from = None
    else:
        resume_from = prepare_output_dir(output_dir, overwrite=recipe.output.overwrite, resume=resume, accelerator=accelerator)
    set_seed(training.seed)
    model, new_modules = build_head(recipe, task, config)
    if evaluate_only and new_modules:
        raise HftkError(
            f"the model at {recipe.model.name_or_path} has no trained {recipe.task} head "
            f"({', '.join(new_modules)} would be random): fine-tune it first with `hftk finetune {recipe.task}`"
        )
    if recipe.lora.r > 0 and not evaluate_only:
        model = apply_lora(model, recipe.lora, task.kind, new_modules)
    evaluator = Evaluator(recipe, task, tokenizer, accelerator)

    if evaluate_only:
        output_dir.mkdir(parents=True, exist_ok=True)
        model = accelerator.prepare(model)
        metrics = evaluator(model)
        if accelerator.is_main_process:
            write_predictions(output_dir, task, evaluator, tokenizer)
            from hftk.training.checkpoint import write_json_atomic

            write_json_atomic(output_dir / "metrics.json", metrics)
        accelerator.print(json.dumps(metrics, indent=2))
        return output_dir

    if training.metric_for_best_model is None:
        training.metric_for_best_model = f"eval_{task.main_metric}"
        training.greater_is_better = task.greater_is_better
    train_loader = DataLoader(
        task.train, batch_size=training.per_device_train_batch_size, shuffle=True, collate_fn=task.collator
    )

    def save_model(model, folder: Path) -> None:
        write_model_folder(model, tokenizer, folder)

    hooks = TrainingHooks(
        save_model=save_model,
        count_tokens=lambda batch: int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel(),
        evaluate=evaluator,
    )
    accelerator.init_trackers("logs", config=flat_config(recipe))
    model, state = train(
        accelerator, model, train_loader, training, output_dir, hooks, resume=resume_from is not None, session_start=session_start
    )

    final = accelerator.unwrap_model(model)
    best_record = next((r for r in state.log_history if r["step"] == state.best_step and training.metric_for_best_model in r), None)
    if best_record is not None and state.best_step != state.step and (output_dir / "best").is_dir():
        final = load_best(final, output_dir / "best")
        evaluator(accelerator.prepare(final))  # predictions of the model we ship
    else:
        best_record = next((r for r in reversed(state.log_history) if training.metric_for_best_model in r), {})
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
    if recipe.data.test_file:
        metrics.update(evaluate_test_file(recipe, tokenizer, final, accelerator))
    if accelerator.is_main_process:
        if recipe.lora.r > 0:
            final = save_lora_outputs(final, output_dir, recipe.lora)
        write_predictions(output_dir, task, evaluator, tokenizer, staging=True)
        finish_run(
            output_dir,
            model=final,
            tokenizer=tokenizer,
            recipe_yaml=dump_recipe(recipe),
            metrics=metrics,
            log_history=state.log_history,
            card={"base_model": recipe.model.name_or_path, "datasets": dataset_names(recipe)},
        )
        (output_dir / "all_results.json").write_text(json.dumps(metrics, indent=2) + "\n")
        drop_resume_state(output_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return output_dir


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
    metrics = Evaluator(test_recipe, task, tokenizer, accelerator)(accelerator.prepare(model))
    return {"test_" + key.removeprefix("eval_"): value for key, value in metrics.items()}


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


def dataset_names(recipe: FinetuneRecipe) -> list[str]:
    data = recipe.data
    if data.dataset_name:
        return [data.dataset_name]
    if recipe.task == "glue" and data.glue_task:
        return ["nyu-mll/glue"]
    return [Path(data.train_file).parent.name] if data.train_file else []


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
