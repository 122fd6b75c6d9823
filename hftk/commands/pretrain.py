"""`hftk pretrain`: corpus → tokenizer → packed blocks → hftk model → Accelerate loop → model folder.

The output folder loads with `AutoModelForMaskedLM` / `AutoModelForCausalLM` /
`AutoModelForPreTraining` (ELECTRA's discriminator; its generator in `generator/`) and
`AutoTokenizer` (and with `trust_remote_code=True` where hftk is not installed). Its
`metrics.json` is written last: a folder without it is not a finished run.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import datasets
import torch
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers import AutoConfig, PreTrainedModel

from hftk.data.corpus import load_text_corpus
from hftk.data.packing import tokenize_and_pack
from hftk.data.pretrain_stream import streaming_data
from hftk.data.tokenizer import load_tokenizer, tokenizer_config_fields, train_tokenizer
from hftk.errors import HftkError
from hftk.models import MODEL_TYPES
from hftk.objectives import AUTO_CLASS_BY_OBJECTIVE, make_objective
from hftk.objectives import distill as distillation
from hftk.recipe import PretrainRecipe, dump_recipe
from hftk.reporting.run_folder import finish_run
from hftk.training.distributed import check_fsdp_wrappable, full_state_dict, is_sharded
from hftk.training.loop import TrainingHooks
from hftk.training.outputs import prepare_output_dir, removes_new_output_dir_on_error
from hftk.training.session import end_session, run_training, start_session


def build_tokenizer(recipe: PretrainRecipe, corpus: datasets.DatasetDict, resume_from: Path | None):
    """Reuse the recipe's tokenizer, the one saved with the checkpoint being resumed, or train one."""
    if resume_from is not None:
        return load_tokenizer(str(resume_from / "model"))
    if recipe.tokenizer.name_or_path:
        return load_tokenizer(recipe.tokenizer.name_or_path)
    return train_tokenizer(
        corpus["train"]["text"],
        kind=recipe.tokenizer.kind,
        vocab_size=recipe.tokenizer.vocab_size,
        min_frequency=recipe.tokenizer.min_frequency,
        model_max_length=recipe.data.max_seq_length,
    )


def build_model(recipe: PretrainRecipe, tokenizer) -> PreTrainedModel:
    auto_class = AUTO_CLASS_BY_OBJECTIVE[recipe.objective]
    if recipe.model.name_or_path:
        model = auto_class.from_pretrained(recipe.model.name_or_path, attn_implementation=recipe.model.attn_implementation)
        if model.config.vocab_size < len(tokenizer):
            raise HftkError(
                f"tokenizer has {len(tokenizer)} tokens but model {recipe.model.name_or_path} only {model.config.vocab_size}: "
                "use the model's own tokenizer (tokenizer.name_or_path)"
            )
        return model
    fields = dict(recipe.model.config)
    fields.setdefault("max_position_embeddings", max(recipe.data.max_seq_length, 128))
    fields.update(tokenizer_config_fields(recipe.model.type, tokenizer))
    if recipe.model.type == "hftk_bert":
        # No pretraining objective trains BERT's pooler (the pretraining heads have none), so the folder
        # says so: a sequence classifier built on it then reads the body directly and its one fresh layer
        # is `classifier`, which peft's SEQ_CLS default trains and saves. A fresh pooler outside it would
        # stay random under LoRA and differ on every load. `use_pooler: true` in the recipe keeps one.
        fields.setdefault("use_pooler", False)
    config = MODEL_TYPES[recipe.model.type](**fields)
    return auto_class.from_config(config, attn_implementation=recipe.model.attn_implementation)


def model_skeleton(recipe: PretrainRecipe) -> PreTrainedModel:
    """The recipe's model on the meta device (no weights, no memory): its layer classes, before any data work."""
    auto_class = AUTO_CLASS_BY_OBJECTIVE[recipe.objective]
    if recipe.model.name_or_path:
        config = AutoConfig.from_pretrained(recipe.model.name_or_path)
    else:
        fields = dict(recipe.model.config)
        fields.setdefault("max_position_embeddings", max(recipe.data.max_seq_length, 128))
        fields["vocab_size"] = recipe.tokenizer.vocab_size or 1024  # the real size comes with the tokenizer
        config = MODEL_TYPES[recipe.model.type](**fields)
    with torch.device("meta"):
        return auto_class.from_config(config)


DATASETS_CACHE = "datasets-cache"


def datasets_cache(output_dir: Path) -> str:
    """Where a local corpus's Arrow copy and its tokenised, packed blocks go: inside the run folder.

    Not the user's home: the copy is only for this run (a resumed run reuses it), so it leaves
    with the run (`keep_what_continuing_needs`). A Hub corpus stays in the shared HF cache instead.
    """
    return str(output_dir / DATASETS_CACHE)


def keep_what_continuing_needs(output_dir: Path, keep_checkpoint: bool, say) -> None:
    """A finished run keeps its newest checkpoint (optimizer state, to train on), or none; and drops its datasets cache."""
    import shutil

    from hftk.training.checkpoint import checkpoints_dir, list_checkpoints

    shutil.rmtree(output_dir / DATASETS_CACHE, ignore_errors=True)
    checkpoints = list_checkpoints(output_dir)
    for old in checkpoints if not keep_checkpoint else checkpoints[:-1]:
        shutil.rmtree(old, ignore_errors=True)
    if keep_checkpoint and checkpoints:
        say(f"kept {checkpoints[-1].relative_to(output_dir)} (optimizer state, to train on); output.keep_checkpoint=false keeps none")
    elif not keep_checkpoint:
        shutil.rmtree(checkpoints_dir(output_dir), ignore_errors=True)


@removes_new_output_dir_on_error
def pretrain(recipe: PretrainRecipe, *, resume: bool = False) -> Path:
    """Run a pretraining recipe; return the output folder."""
    session_start = time.perf_counter()
    output_dir = Path(recipe.output.output_dir)
    accelerator = start_session(recipe.training, output_dir, dump_recipe(recipe))
    teacher, teacher_tokenizer = check_before_work(recipe, accelerator)
    resume_from = prepare_output_dir(
        output_dir, overwrite=recipe.output.overwrite, resume=resume, accelerator=accelerator, recipe_yaml=dump_recipe(recipe)
    )
    set_seed(recipe.training.seed)
    tokenizer, train_data, validation = load_pretraining_data(recipe, accelerator, resume_from, teacher_tokenizer)
    model = build_model(recipe, tokenizer) if teacher is None else distillation.build_student(recipe, teacher, tokenizer, build_model)
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int):  # the saved tokenizer's truncation default: the model's positions, not the block length
        tokenizer.model_max_length = positions
    blocks = "training blocks" if recipe.data.streaming else f"{len(train_data)} training blocks"
    accelerator.print(
        f"{type(model).__name__}: {model.num_parameters() / 1e6:.2f} M parameters, "
        f"{blocks} of {recipe.data.max_seq_length} tokens{', streamed' if recipe.data.streaming else ''}"
    )
    train_loader, eval_loader = make_loaders(recipe, train_data, validation, accelerator)
    objective = make_objective(recipe, tokenizer, accelerator, model)
    model = objective.training_model(model)  # ELECTRA: generator and discriminator together
    if teacher is not None:  # general distillation: the student trains inside a wrapper with its teacher
        model = distillation.wrap_student(recipe, model, teacher, accelerator)
    hooks = pretraining_hooks(recipe, objective, tokenizer, eval_loader, accelerator)
    model, state = run_training(
        accelerator, model, train_loader, recipe, output_dir, hooks, resume=resume_from is not None, session_start=session_start
    )
    write_pretrained_folder(recipe, objective, model, state, tokenizer, accelerator, output_dir)
    end_session(accelerator)
    return output_dir


def check_before_work(recipe: PretrainRecipe, accelerator) -> tuple[PreTrainedModel | None, object]:
    """What can fail before the output folder is touched: FSDP wrapping, the distillation teacher.

    Returns the teacher and its tokenizer (a distilled student speaks its teacher's), or (None, None).
    """
    if is_sharded(accelerator):  # can FSDP wrap this model's blocks?
        if recipe.distill.teacher:
            raise HftkError("distill.teacher does not run under FSDP/DeepSpeed ZeRO-3 yet: use DDP or one process")
        check_fsdp_wrappable(accelerator, model_skeleton(recipe))
    distillation.check_recipe(recipe)
    if not recipe.distill.teacher:
        return None, None
    teacher, teacher_tokenizer = distillation.load_teacher(recipe)
    distillation.check_tokenizers(recipe, teacher_tokenizer)
    return teacher, teacher_tokenizer


def load_pretraining_data(recipe: PretrainRecipe, accelerator, resume_from: Path | None, teacher_tokenizer=None):
    """(tokenizer, training data, validation blocks): packed datasets, or a stream and its validation blocks.

    The main process goes first, so the others read its `datasets` cache.
    """
    data = recipe.data

    def tokenizer_for(recipe, corpus, resume_from):  # a distilled student speaks its teacher's tokenizer
        return teacher_tokenizer if recipe.distill.teacher else build_tokenizer(recipe, corpus, resume_from)

    with accelerator.main_process_first():
        if data.streaming:
            return streaming_data(recipe, accelerator, resume_from, tokenizer_for)
        cache_dir = None if data.dataset_name else datasets_cache(Path(recipe.output.output_dir))
        accelerator.print(f"datasets cache: {cache_dir or 'the Hugging Face datasets cache (HF_DATASETS_CACHE)'}")
        corpus = load_text_corpus(
            data.train_files or None,
            cache_dir=cache_dir,
            dataset_name=data.dataset_name,
            dataset_config=data.dataset_config,
            text_column=data.text_column,
            validation_files=data.validation_files or None,
            validation_split_percentage=data.validation_split_percentage,
            seed=recipe.training.seed,
        )
        tokenizer = tokenizer_for(recipe, corpus, resume_from)
        packed = {
            split: tokenize_and_pack(
                corpus[split],
                tokenizer,
                data.max_seq_length,
                add_special_tokens=recipe.objective in ("mlm", "electra"),  # [CLS] ... [SEP] blocks for encoders
                num_proc=data.preprocessing_num_workers,
                desc=split,
            ).with_format("torch")
            for split in ("train", "validation")
        }
    return tokenizer, packed["train"], packed["validation"]


def make_loaders(recipe: PretrainRecipe, train_data, validation, accelerator):
    """The training loader (a stream is its own) and the prepared evaluation loader."""
    training = recipe.training
    if recipe.data.streaming:
        train_loader = train_data
    else:
        train_loader = DataLoader(train_data, batch_size=training.per_device_train_batch_size, shuffle=True, drop_last=True)
    eval_loader = DataLoader(validation, batch_size=training.per_device_eval_batch_size)
    if not recipe.data.streaming and len(train_loader) == 0:
        raise HftkError(
            f"only {len(train_data)} training blocks, fewer than one batch of "
            f"{training.per_device_train_batch_size}: lower training.per_device_train_batch_size or add text"
        )
    return train_loader, accelerator.prepare(eval_loader)


def pretraining_hooks(recipe: PretrainRecipe, objective, tokenizer, eval_loader, accelerator) -> TrainingHooks:
    """The objective's batch preparation, target counts, evaluation and saving, as the loop calls them."""
    training = recipe.training
    student = distillation.unwrap_student  # the saved model; any other model as is

    def evaluate(model) -> dict[str, float]:
        if objective.evaluate is not None:
            return objective.evaluate(model, eval_loader, training.max_eval_batches, accelerator)
        model.eval()
        total_loss, total_targets = torch.zeros((), device=accelerator.device), torch.zeros((), device=accelerator.device)
        with torch.no_grad():
            for index, batch in enumerate(eval_loader):
                if training.max_eval_batches and index >= training.max_eval_batches:
                    break
                batch = objective.prepare(batch, index, evaluation=True)
                targets = objective.count_targets(batch)
                loss = model(**batch).loss
                total_loss += loss.float() * targets
                total_targets += targets
        total_loss, total_targets = accelerator.reduce(total_loss, "sum"), accelerator.reduce(total_targets, "sum")
        loss = (total_loss / total_targets.clamp(min=1)).item()
        return {"eval_loss": loss, "perplexity": math.exp(min(loss, 50.0))}

    def save_model(model, folder: Path, state_dict: dict | None = None) -> None:
        objective.save_model(student(model), tokenizer, folder, state_dict)

    return TrainingHooks(
        save_model=save_model,
        load_model=lambda model, folder: objective.load_model(student(model), folder),
        prepare_batch=lambda batch, index: objective.prepare(batch, index),
        count_targets=objective.count_targets,
        evaluate=evaluate,
        tokens_per_step=training.per_device_train_batch_size
        * training.gradient_accumulation_steps
        * accelerator.num_processes
        * recipe.data.max_seq_length,
    )


def write_pretrained_folder(recipe: PretrainRecipe, objective, model, state, tokenizer, accelerator, output_dir: Path) -> None:
    """metrics.json from the last evaluation and the run's counters; the model folder, written by the main process."""
    student = distillation.unwrap_student
    final_eval = next((r for r in reversed(state.log_history) if "eval_loss" in r), {})
    metrics = {
        "eval_loss": final_eval.get("eval_loss"),
        "perplexity": final_eval.get("perplexity"),
        "train_loss": next((r["loss"] for r in reversed(state.log_history) if "loss" in r), None),
        "train_steps": state.step,
        "tokens_seen": state.tokens_seen,
        "tokens_per_second": state.tokens_seen / max(state.elapsed_seconds, 1e-9),
        "train_runtime_seconds": state.elapsed_seconds,
        "wall_time_seconds": state.wall_seconds,
        "train_planned_steps": state.planned_steps,
        "train_stopped_by": state.stopped_by,
        "num_parameters": student(accelerator.unwrap_model(model)).num_parameters(),
        **{key: value for key, value in final_eval.items() if key.startswith("eval_") and key != "eval_loss"},
    }
    weights = full_state_dict(accelerator, model)  # FSDP: gathered from every rank, before rank 0 writes
    if accelerator.is_main_process:
        saved_model, weights = objective.finish(student(accelerator.unwrap_model(model)), weights, tokenizer, output_dir)
        finish_run(
            output_dir,
            state_dict=weights,
            model=saved_model,
            tokenizer=tokenizer,
            recipe_yaml=dump_recipe(recipe),
            metrics=metrics,
            log_history=state.log_history,
        )
        keep_what_continuing_needs(output_dir, recipe.output.keep_checkpoint, accelerator.print)
