"""The training loop: Accelerate for devices, precision and processes; budgets; atomic checkpoints.

One loop serves pretraining and every fine-tuning task. What differs between them comes in
through `TrainingHooks`: how a batch is prepared (MLM masking), how loss targets and tokens
are counted, how the model is evaluated and saved.

Gradient accumulation is explicit (`no_sync` on all but the last micro-batch): the batches of
one optimizer step are fetched first, their loss targets are counted across micro-batches
and processes, and each micro-batch loss is normalised by that total (`num_items_in_batch`),
so accumulation and several processes give exactly the loss of one large batch.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch
from accelerate import Accelerator

from hftk.errors import HftkError, TrainingInterrupted
from hftk.recipe import TrainingSection
from hftk.training.budget import Budget, advance_scheduler, make_scheduler
from hftk.training.progress import progress_bar
from hftk.training.checkpoint import (
    TrainState,
    latest_checkpoint,
    load_model_weights,
    publish_checkpoint,
    remove_partial_checkpoints,
    temporary_checkpoint,
)
from hftk.training.distributed import full_state_dict


def count_input_tokens(batch: dict) -> int:
    """The model's input tokens, padding left out: a batch padded to its longest row (fine-tuning, denoising)
    would otherwise count differently when the same global batch is split across processes."""
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())


@dataclass
class TrainingHooks:
    """The task-specific parts of training."""

    save_model: Callable[..., None]  # (model, folder), plus state_dict=full weights when they are sharded
    # Reads back what save_model wrote (checkpoints keep the model once: in `model/`).
    load_model: Callable[[torch.nn.Module, Path], None] = load_model_weights
    prepare_batch: Callable[[dict, int], dict] = lambda batch, index: batch
    count_targets: Callable[[dict], int] | None = None
    count_tokens: Callable[[dict], int] = count_input_tokens
    evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None
    tokens_per_step: int | None = None  # nominal, for token budgets
    # (model, batch, **kwargs) -> loss, when the task's loss is not the model's own (label smoothing); kwargs as the model's
    compute_loss: Callable[..., torch.Tensor] | None = None


def fault_point(name: str, step: int) -> None:
    """Fault injection for the kill-and-resume tests: `HFTK_FAULT=name:step` SIGKILLs this process here
    (`HFTK_FAULT_SIGNAL=INT` sends SIGINT instead, as Ctrl-C does)."""
    if os.environ.get("HFTK_FAULT") == f"{name}:{step}":
        os.kill(os.getpid(), getattr(signal, "SIG" + os.environ.get("HFTK_FAULT_SIGNAL", "KILL")))


class NonFiniteLoss(HftkError):
    """Training diverged; the message names the last good checkpoint."""


class InterruptFlag:
    """SIGINT sets a flag that the loop reads at the next step, so it can save and stop cleanly.

    A second Ctrl-C (say, while the checkpoint is written) gets the default behaviour back and
    interrupts at once. Only the main thread may install signal handlers; elsewhere this is inert.
    """

    def __init__(self) -> None:
        self.raised = False
        self._previous = None

    def __enter__(self) -> InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.raised = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def build_optimizer(model: torch.nn.Module, training: TrainingSection) -> torch.optim.Optimizer:
    """AdamW without weight decay on biases, norms and embeddings (1-D or embedding tables)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or "embeddings" in name else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": training.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    kwargs = dict(lr=training.learning_rate, betas=(training.adam_beta1, training.adam_beta2), eps=training.adam_epsilon)
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, **kwargs)


def prepare_model(model: torch.nn.Module, training: TrainingSection) -> None:
    """Apply the recipe's `gradient_checkpointing` and `torch_compile` to the model, in place.

    `Module.compile()` compiles the forward in place, so parameter names (and saved folders)
    keep no `_orig_mod.` prefix. Checkpointing is non-reentrant, which also works when the
    embeddings are frozen (LoRA) without `enable_input_require_grads`.
    """
    if training.gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise HftkError(
                f"{type(model).__name__} does not support gradient checkpointing: set training.gradient_checkpointing=false"
            )
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if training.torch_compile:
        model.compile()


def train(
    accelerator: Accelerator,
    model: torch.nn.Module,
    train_dataloader: torch.utils.data.DataLoader,
    training: TrainingSection,
    output_dir: Path,
    hooks: TrainingHooks,
    resume: bool = False,
    session_start: float | None = None,
) -> tuple[torch.nn.Module, TrainState]:
    """Train until the budget is spent; return the (prepared) model and the final state.

    `session_start` (a `time.perf_counter()` value) is when this command began, so the state's
    `wall_seconds` counts set-up too; `elapsed_seconds` counts the training loop only. Both add
    up over resumed sessions, up to each session's last checkpoint. Ctrl-C stops at the end of
    the current step, writes a checkpoint and raises `TrainingInterrupted`.
    """
    session_start = time.perf_counter() if session_start is None else session_start
    with InterruptFlag() as interrupt:
        return _train(accelerator, model, train_dataloader, training, output_dir, hooks, resume, session_start, interrupt)


def _train(
    accelerator: Accelerator,
    model: torch.nn.Module,
    train_dataloader: torch.utils.data.DataLoader,
    training: TrainingSection,
    output_dir: Path,
    hooks: TrainingHooks,
    resume: bool,
    session_start: float,
    interrupt: InterruptFlag,
) -> tuple[torch.nn.Module, TrainState]:
    run = TrainingRun(accelerator, model, train_dataloader, training, output_dir, hooks, session_start, interrupt)
    if resume:
        run.resume_from_checkpoint()
    run.start(resume)
    run.loop()
    return run.finish()


class TrainingRun:
    """One session of training: set-up, the optimizer step, evaluation and checkpoints, each a method.

    The attributes are what the former closures shared: the prepared model, optimizer, scheduler
    and loader, the budget, the `TrainState` that checkpoints carry, and the progress bar.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        model: torch.nn.Module,
        train_dataloader: torch.utils.data.DataLoader,
        training: TrainingSection,
        output_dir: Path,
        hooks: TrainingHooks,
        session_start: float,
        interrupt: InterruptFlag,
    ) -> None:
        self.accelerator, self.training, self.output_dir, self.hooks = accelerator, training, output_dir, hooks
        self.session_start, self.interrupt = session_start, interrupt
        prepare_model(model, training)
        optimizer = build_optimizer(model, training)
        # A streamed corpus (hftk.data.streaming) comes already split across processes, with no length.
        self.streamed = getattr(train_dataloader, "is_stream", False)
        if self.streamed:
            model, optimizer = accelerator.prepare(model, optimizer)
        else:
            model, optimizer, train_dataloader = accelerator.prepare(model, optimizer, train_dataloader)
        self.model, self.optimizer, self.train_dataloader = model, optimizer, train_dataloader
        self.accumulation = training.gradient_accumulation_steps
        self.steps_per_epoch = 1 if self.streamed else max(1, math.ceil(len(train_dataloader) / self.accumulation))
        self.budget = self._budget()
        self.scheduler = make_scheduler(training.lr_scheduler_type, optimizer, self.budget, training.warmup_ratio, training.warmup_steps)
        accelerator.register_for_checkpointing(self.scheduler)
        register_model_state_hooks(accelerator, hooks)
        self.state = TrainState()
        self.rng_at_checkpoint = None

    def _budget(self) -> Budget:
        training, hooks = self.training, self.hooks
        budget = Budget(
            steps_per_epoch=self.steps_per_epoch,
            tokens_per_step=hooks.tokens_per_step or 1,
            max_steps=training.max_steps,
            num_train_epochs=None if self.streamed else training.num_train_epochs,
            max_tokens=training.max_tokens if hooks.tokens_per_step else None,
            max_time_seconds=training.max_time_minutes * 60 if training.max_time_minutes else None,
            min_steps=None if training.max_steps is not None else getattr(training, "min_steps", None),
        )
        dataset = None if self.streamed else getattr(self.train_dataloader, "dataset", None)
        self.accelerator.print(budget.describe(len(dataset) if hasattr(dataset, "__len__") else None))
        return budget

    # -- set-up ----------------------------------------------------------------------------------

    def resume_from_checkpoint(self) -> None:
        checkpoint = latest_checkpoint(self.output_dir)
        if checkpoint is None:
            raise HftkError(f"nothing to resume in {self.output_dir}: no complete checkpoint; run without --resume")
        self.accelerator.load_state(str(checkpoint))
        self.state = TrainState.load(checkpoint)
        # Creating a DataLoader iterator draws its base seed from the global RNG. The uninterrupted
        # run drew it at the epoch's start, before this checkpoint's RNG state was saved; a run
        # resumed mid-epoch draws it again below, which would shift every later dropout mask.
        self.rng_at_checkpoint = torch.get_rng_state() if self.state.batches_in_epoch else None
        self.accelerator.print(f"Resuming from {checkpoint} (step {self.state.step})")

    def start(self, resume: bool) -> None:
        """The clocks, the progress bar and the logging window, from the (possibly resumed) state."""
        state = self.state
        state.planned_steps = self.budget.total_steps()
        self.wall_before = max(state.wall_seconds, state.elapsed_seconds)  # earlier sessions, up to the checkpoint
        if self.accelerator.is_main_process:
            remove_partial_checkpoints(self.output_dir)
        self.total_steps = self.budget.total_steps()
        self.bar = progress_bar(  # tqdm on a terminal; in a log, one line per logging step
            total=self.total_steps,
            initial=state.step,
            disable=not self.accelerator.is_local_main_process,
            desc="training",
            unit="step",
            dynamic_ncols=True,
        )
        self.start_time = time.perf_counter() - state.elapsed_seconds
        self.window_loss, self.window_steps, self.window_tokens, self.window_start = 0.0, 0, 0, time.perf_counter()
        self.stop = False
        self.last_saved = state.step if resume else -1

    # -- the loop --------------------------------------------------------------------------------

    def loop(self) -> None:
        """Epochs of optimizer steps until the budget is spent, early stopping says stop or Ctrl-C."""
        state, budget = self.state, self.budget
        while not self.stop and not budget.done(state.step, time.perf_counter() - self.start_time):
            group = self._epoch()
            if not self.stop and not budget.done(state.step, time.perf_counter() - self.start_time) and len(group) == 0:
                state.epoch += 1
                state.batches_in_epoch = 0

    def _batches(self):
        """This epoch's loader, skipped to the checkpoint's exact data position on a mid-epoch resume."""
        loader, state = self.train_dataloader, self.state
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(state.epoch)
        if state.batches_in_epoch and self.streamed:  # rebuilt and skipped
            return loader.skip_first_batches(state.batches_in_epoch)
        if state.batches_in_epoch:
            return self.accelerator.skip_first_batches(loader, state.batches_in_epoch)
        return loader

    def _epoch(self) -> list:
        """Optimizer steps over (the rest of) one epoch; returns the last group of batches (empty at the epoch's end)."""
        iterator = iter(self._batches())
        while True:
            group = list(islice(iterator, self.accumulation))
            if self.rng_at_checkpoint is not None:  # the loader's iterator is lazy: it drew its seed just now
                torch.set_rng_state(self.rng_at_checkpoint)
                self.rng_at_checkpoint = None
            if not group:
                return group
            interrupted = self.step(group)
            out_of_budget = self.budget.done(self.state.step, self.state.elapsed_seconds)
            self._after_step(interrupted, out_of_budget)
            if self.stop or out_of_budget:
                return group

    def step(self, group: list[dict]) -> bool:
        """One optimizer step over `group` (the micro-batches of one step); True when a process was interrupted."""
        accelerator, hooks, state = self.accelerator, self.hooks, self.state
        self.model.train()
        prepared = [hooks.prepare_batch(batch, state.step * self.accumulation + i) for i, batch in enumerate(group)]
        local_tokens = sum(hooks.count_tokens(batch) for batch in prepared)
        counts = [local_tokens]
        if hooks.count_targets is not None:
            counts.append(sum(hooks.count_targets(batch) for batch in prepared))
        counts.append(int(self.interrupt.raised))  # summed with the counts: every process stops at the same step
        totals = accelerator.reduce(torch.tensor(counts, device=accelerator.device), reduction="sum")
        num_items = totals[1].clamp(min=1) if hooks.count_targets is not None else None
        step_loss = accelerator.reduce(self._forward_backward(prepared, num_items), reduction="mean").item()
        if not math.isfinite(step_loss):
            checkpoint = latest_checkpoint(self.output_dir)
            kept = f"last good checkpoint: {checkpoint}" if checkpoint else "no checkpoint was saved yet"
            raise NonFiniteLoss(
                f"loss became {step_loss} at step {state.step + 1}; stopped ({kept}); "
                "lower training.learning_rate or use training.mixed_precision=no"
            )
        if self.training.max_grad_norm:
            accelerator.clip_grad_norm_(self.model.parameters(), self.training.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.batches_in_epoch += len(group)
        state.tokens_seen += int(totals[0])
        state.elapsed_seconds = time.perf_counter() - self.start_time
        advance_scheduler(self.scheduler, self.budget, state.step, state.elapsed_seconds)
        self._log_step(step_loss, int(totals[0]))
        return bool(int(totals[-1]))

    def _forward_backward(self, prepared: list[dict], num_items: torch.Tensor | None):
        """Backward of every micro-batch (gradients synced on the last only); the step's loss on this process."""
        accelerator, model = self.accelerator, self.model
        step_loss = 0.0
        forward_loss = self.hooks.compute_loss or (lambda model, batch, **kwargs: model(**batch, **kwargs).loss)
        for i, batch in enumerate(prepared):
            sync = i == len(prepared) - 1
            with contextlib.nullcontext() if sync else accelerator.no_sync(model):
                if num_items is not None:
                    loss = forward_loss(model, batch, num_items_in_batch=num_items)
                    # Normalised by the global target count: undo DDP's mean over processes.
                    accelerator.backward(loss * accelerator.num_processes)
                    step_loss += loss.detach().float() * accelerator.num_processes
                else:
                    loss = forward_loss(model, batch) / len(prepared)
                    accelerator.backward(loss)
                    step_loss += loss.detach().float()
        return step_loss

    def _log_step(self, step_loss: float, tokens: int) -> None:
        """Progress bar, and every `logging_steps` a log record of the window's mean loss and throughput."""
        state = self.state
        self.window_loss, self.window_steps, self.window_tokens = self.window_loss + step_loss, self.window_steps + 1, self.window_tokens + tokens
        self.bar.update(1)
        if self.total_steps is None:  # wall-clock budget: estimate the total for the ETA
            self.bar.total = max(state.step, round(state.step / max(self.budget.progress(state.step, state.elapsed_seconds), 1e-9)))
        if state.step % self.training.logging_steps != 0:
            return
        now = time.perf_counter()
        epoch_fraction = 0 if self.streamed else state.batches_in_epoch / max(len(self.train_dataloader), 1)
        record = {
            "step": state.step,
            "loss": self.window_loss / self.window_steps,
            "learning_rate": self.scheduler.get_last_lr()[0],
            "tokens_per_second": self.window_tokens / max(now - self.window_start, 1e-9),
            "tokens_seen": state.tokens_seen,
            "epoch": state.epoch + epoch_fraction,
        }
        state.log_history.append(record)
        self.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=state.step)
        self.bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_second']:.0f}")
        self.window_loss, self.window_steps, self.window_tokens, self.window_start = 0.0, 0, 0, now

    def _after_step(self, interrupted: bool, out_of_budget: bool) -> None:
        """Evaluation and checkpoint when due; on Ctrl-C, a checkpoint and TrainingInterrupted."""
        step, training = self.state.step, self.training
        if training.eval_steps and step % training.eval_steps == 0 and not out_of_budget:
            self.stop = self.evaluate()
        if training.save_steps and step % training.save_steps == 0 and not out_of_budget:
            self.save_checkpoint()
            self.last_saved = step
        fault_point("step", step)
        if interrupted and not out_of_budget:
            if self.last_saved != step:
                self.save_checkpoint()
            self.bar.close()
            raise TrainingInterrupted(f"stopped at step {step}; rerun the same command with --resume to continue")

    def finish(self) -> tuple[torch.nn.Module, TrainState]:
        """Why training stopped, a last evaluation and checkpoint; the model and final state."""
        state, training = self.state, self.training
        self.bar.close()
        state.stopped_by = self.budget.stop_reason(state.step, time.perf_counter() - self.start_time) or (
            "early_stopping" if self.stop else None
        )
        if state.stopped_by == "max_time_minutes" and state.planned_steps is not None:
            self.accelerator.print(
                f"training.max_time_minutes={training.max_time_minutes} reached at step {state.step} of "
                f"{state.planned_steps}: stopped early, before the learning-rate schedule had decayed "
                f"(metrics.json: train_stopped_by); the step budget alone gives the same model on any machine"
            )
        if state.stopped_by != "max_time_minutes":  # said above, with what it means for the schedule
            self.accelerator.print(self.budget.describe_stop(state.stopped_by, state.step))
        self.evaluate()
        if self.last_saved != state.step:
            self.save_checkpoint()
        state.wall_seconds = self.wall_before + time.perf_counter() - self.session_start
        return self.model, state

    # -- evaluation and checkpoints ----------------------------------------------------------------

    def evaluate(self) -> bool:
        """Evaluate, log, track the best model; True when early stopping says stop."""
        if self.hooks.evaluate is None:
            return False
        state, training = self.state, self.training
        metrics = self.hooks.evaluate(self.model)
        metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        record = {"step": state.step, **metrics}
        state.log_history.append(record)
        self.accelerator.log(metrics, step=state.step)
        self.bar.write(" ".join(f"{k}={v:.4g}" for k, v in record.items()))
        key = training.metric_for_best_model
        if key is None:
            return False
        if key not in metrics:  # at the first evaluation: a name that can never pick a checkpoint is a mistake
            known = ", ".join(k for k in metrics if k.startswith("eval_"))
            raise HftkError(f"training.metric_for_best_model={key} is not an evaluation metric of this run; use one of: {known}")
        greater = training.greater_is_better if training.greater_is_better is not None else "loss" not in key
        value = metrics[key]
        improved = state.best_metric is None or (value > state.best_metric if greater else value < state.best_metric)
        if improved:
            state.best_metric, state.best_step, state.evals_without_improvement = value, state.step, 0
            self.save_model_folder(self.output_dir / "best", atomic=True)
        else:
            state.evals_without_improvement += 1
        patience = training.early_stopping_patience
        return patience is not None and state.evals_without_improvement >= patience

    def save_model_folder(self, folder: Path, atomic: bool = False) -> None:
        """Every rank takes part in gathering sharded weights; rank 0 alone writes the folder."""
        accelerator = self.accelerator
        weights = full_state_dict(accelerator, self.model)
        if not accelerator.is_main_process:
            return
        extra = {} if weights is None else {"state_dict": weights}
        write = lambda target: self.hooks.save_model(accelerator.unwrap_model(self.model), target, **extra)  # noqa: E731
        save_atomically(write, folder) if atomic else write(folder)

    def save_checkpoint(self) -> None:
        """A complete checkpoint (Accelerate's state, the model folder, the TrainState), published atomically."""
        accelerator, state = self.accelerator, self.state
        state.wall_seconds = self.wall_before + time.perf_counter() - self.session_start
        tmp = temporary_checkpoint(self.output_dir, state.step) if accelerator.is_main_process else None
        accelerator.wait_for_everyone()
        tmp = tmp or self.output_dir / "checkpoints" / f".tmp-step-{state.step}"
        accelerator.save_state(str(tmp))  # FSDP: every rank writes its shard (or takes part in the gather)
        self.save_model_folder(tmp / "model")
        accelerator.wait_for_everyone()  # every rank's random_states_<rank>.pkl is written before the folder is published
        if accelerator.is_main_process:
            fault_point("checkpoint", state.step)
            state.save(tmp)
            publish_checkpoint(tmp, state.step, self.training.save_total_limit)
        accelerator.wait_for_everyone()


def register_model_state_hooks(accelerator: Accelerator, hooks: TrainingHooks) -> None:
    """Keep the model once per checkpoint: in `model/` (hooks.save_model), not again in Accelerate's format.

    Accelerate's documented state hooks let us drop its weight files on save and load the
    weights from `model/` on resume. FSDP and DeepSpeed save sharded weights their own way
    (those never reach the hooks' lists), so they keep Accelerate's files.
    """

    def skip_weights(models, weights, output_dir) -> None:
        weights.clear()

    def load_from_model_folder(models, input_dir) -> None:
        for model in models:
            hooks.load_model(accelerator.unwrap_model(model), Path(input_dir) / "model")
        models.clear()

    accelerator.register_save_state_pre_hook(skip_weights)
    accelerator.register_load_state_pre_hook(load_from_model_folder)


def save_atomically(write: Callable[[Path], None], destination: Path) -> Path:
    """Write a folder under a temporary name, then swap it into place."""
    tmp = destination.with_name(f".{destination.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    old = destination.with_name(f".{destination.name}.old")
    if destination.exists():
        destination.rename(old)
    tmp.rename(destination)
    shutil.rmtree(old, ignore_errors=True)
    return destination
