"""The recipe sections of `hftk pretrain` and `hftk finetune`: typed, validated, with defaults.

A typo'd key, a wrong type or an impossible value fails on load with one line that names
the key, before any data is read or any folder is written (`hftk.recipe.loading`).
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hftk.recipe.tasks import TaskName

# transformers (and hftk.models, which needs torch) are imported where a check needs them, so a
# recipe error is reported without paying seconds of imports first.


def did_you_mean(name: str, choices, prefix: str = "") -> str:
    """"; did you mean X?" for a near miss among `choices`, else ""."""
    close = difflib.get_close_matches(name, [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {prefix}{close[0]}?" if close else ""


class Section(BaseModel):
    """Unknown keys are errors: a misspelt option must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class ModelSection(Section):
    type: Literal["hftk_bert", "hftk_gpt", "hftk_seq2seq"] | None = Field(None, description="the model type; null: the one the objective trains (pretraining) or the checkpoint's own (fine-tuning)")
    name_or_path: str | None = Field(None, description="start from these weights (folder or Hub id)")
    config: dict[str, Any] = Field(default_factory=dict, description="fields of the model config class")
    attn_implementation: Literal["sdpa", "eager"] = Field("sdpa", description="attention kernel: sdpa (PyTorch's scaled_dot_product_attention) or eager (plain matmuls)")


class TokenizerSection(Section):
    name_or_path: str | None = Field(None, description="reuse this tokenizer instead of training one")
    kind: Literal["wordpiece", "bpe", "seq2seq"] | None = Field(None, description="default: wordpiece for mlm, bpe for clm, seq2seq for denoise")
    vocab_size: int = Field(8192, ge=64, description="size of the vocabulary a trained tokenizer gets (special tokens included)")
    min_frequency: int = Field(2, ge=1, description="a token enters the vocabulary only if the corpus has it at least this often")


# `--model` values that name no checkpoint to load weights from (see `model_source`).
NEW_MODEL = "new"
RANDOM_TWIN_PREFIX = "random:"


def model_source(name_or_path: str | None) -> tuple[str, str | None]:
    """What `model.name_or_path` asks for: ("new", TYPE or None), ("random", FOLDER) or ("checkpoint", PATH).

    `new` / `new:TYPE`: a fresh model built from the recipe's `model.new` section, its tokenizer
    trained on the task's training text. `random:FOLDER`: FOLDER's random-init twin (its config and
    tokenizer, fresh weights), the baseline every pretraining claim is measured against.
    """
    if name_or_path is None:
        return "checkpoint", None
    if name_or_path == NEW_MODEL or name_or_path.startswith(NEW_MODEL + ":"):
        return "new", name_or_path.partition(":")[2] or None
    if name_or_path.startswith(RANDOM_TWIN_PREFIX):
        return "random", name_or_path.removeprefix(RANDOM_TWIN_PREFIX)
    return "checkpoint", name_or_path


class FreshModelSection(Section):
    """`--model new`: the model a task builds from scratch, and the tokenizer it trains on the task's training text."""

    type: Literal["hftk_bert", "hftk_gpt", "hftk_seq2seq"] = Field(description="the fresh model's type (--model new:TYPE sets it)")
    config: dict[str, Any] = Field(default_factory=dict, description="fields of the model config class (sizes); vocabulary and special ids come from the tokenizer")
    tokenizer: TokenizerSection = Field(
        default_factory=TokenizerSection, description="kind null: by type (wordpiece for hftk_bert, bpe for hftk_gpt, seq2seq for hftk_seq2seq)"
    )

    @model_validator(mode="after")
    def _known_fields(self) -> FreshModelSection:
        from hftk.models import MODEL_TYPES

        config_class = MODEL_TYPES[self.type]
        fields = {field.name for field in dataclasses.fields(config_class)}
        unknown = sorted(set(self.config) - fields)
        if unknown:
            raise ValueError(
                f"unknown key(s) model.new.config.{', model.new.config.'.join(unknown)} for {self.type}"
                f"{did_you_mean(unknown[0], fields, prefix='model.new.config.')}"
            )
        try:  # the config class's own checks (head sizes, allowed names), before any data is read
            config_class(**self.config)
        except (ValueError, TypeError) as error:
            raise ValueError(f"model.new.config: {str(error).splitlines()[0]}") from None
        return self


class FinetuneModelSection(ModelSection):
    name_or_path: str | None = Field(
        None, description="a model folder or Hub id; `new` (or new:TYPE): a fresh model from model.new; "
        "`random:FOLDER`: FOLDER's random-init twin (same config and tokenizer, fresh weights)"
    )
    new: FreshModelSection | None = Field(None, description="--model new: the fresh model's type, sizes and tokenizer")
    reinit_top_layers: int = Field(
        0, ge=0, description="re-initialise the body's top N blocks before fine-tuning (Zhang et al., 2021: "
        "helps a briefly pretrained encoder when labels are few); 0: keep every pretrained block"
    )


class PretrainDataSection(Section):
    train_files: list[str] = Field(default_factory=list, description="text/jsonl/csv/parquet files or folders")
    dataset_name: str | None = Field(None, description="a Hub data set to pretrain on instead of local files (streamed with data.streaming)")
    dataset_config: str | None = Field(None, description="the Hub data set's configuration name, if it has several")
    validation_files: list[str] = Field(default_factory=list, description="held-out text files or folders; empty: data.validation_split_percentage of the training lines")
    validation_split_percentage: float = Field(5.0, gt=0, lt=50, description="share of the training lines held out for validation when no validation_files are given")
    text_column: str = Field("text", description="the text column of jsonl/csv/parquet files and Hub data sets")
    max_seq_length: int = Field(128, ge=8, description="tokens per packed training block (at most the model's max_position_embeddings)")
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="mlm/electra: share of the tokens masked for prediction")
    whole_word_mask: bool = Field(False, description="mlm: mask every sub-token of a chosen word together")
    denoising: Literal["text_infilling", "span_corruption"] = Field(
        "text_infilling", description="objective denoise: BART's text infilling or T5's span corruption"
    )
    noise_density: float | None = Field(None, gt=0, lt=1, description="denoise: share of tokens corrupted; null: 0.3 infilling, 0.15 span corruption")
    mean_span_length: float = Field(3.0, gt=0, description="denoise: mean span length (infilling: the Poisson rate)")
    preprocessing_num_workers: int | None = Field(None, ge=1, description="processes that tokenize the corpus on the cached path; null: one")
    streaming: bool = Field(False, description="read, tokenize and pack the corpus on the fly instead of caching it")
    shuffle_buffer_size: int = Field(10_000, ge=1, description="streaming: blocks in the seeded shuffle buffer (1: no shuffle)")
    tokenizer_sample_lines: int = Field(
        100_000, ge=1, description="streaming: the tokenizer is trained on the stream's first N non-empty lines"
    )

    _lists = field_validator("train_files", "validation_files", mode="before")(_as_list)


class TrainingSection(Section):
    seed: int = Field(42, description="seed of the model's initialisation, data order, masking and dropout: the same seed gives the same model")
    per_device_train_batch_size: int = Field(32, ge=1, description="training examples (or packed blocks) per process and step")
    per_device_eval_batch_size: int = Field(64, ge=1, description="evaluation examples per process and step")
    gradient_accumulation_steps: int = Field(1, ge=1, description="steps whose gradients add up to one optimizer step (global batch = per-device batch x processes x this)")
    learning_rate: float = Field(1e-3, gt=0, description="peak learning rate (AdamW), reached after warm-up")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not applied to biases, norms and embeddings)")
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="AdamW's beta1")
    adam_beta2: float = Field(0.98, ge=0, lt=1, description="AdamW's beta2")
    adam_epsilon: float = Field(1e-6, gt=0, description="AdamW's epsilon")
    lr_scheduler_type: str = Field("linear", description="learning-rate schedule after warm-up, one of transformers' SchedulerType names (linear, cosine, constant, inverse_sqrt, ...)")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="share of the planned steps spent warming the learning rate up (ignored when warmup_steps is set)")
    warmup_steps: int | None = Field(None, ge=0, description="warm-up steps; null: warmup_ratio of the planned steps")
    max_grad_norm: float | None = Field(0.5, gt=0, description="clip the gradients' global norm to this; null: no clipping")
    max_steps: int | None = Field(None, ge=1, description="budget: optimizer steps; the smallest step budget fixes the learning-rate schedule")
    num_train_epochs: float | None = Field(None, gt=0, description="budget: passes over the training data (fractions allowed)")
    max_tokens: int | None = Field(None, ge=1, description="budget: training tokens (pretraining: packed block tokens)")
    max_time_minutes: float | None = Field(None, gt=0, description="budget: wall-clock minutes; beside a step budget it only stops a slow run early, alone it drives the schedule")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field("no", description="no, bf16 or fp16 (fp16 needs a GPU)")
    eval_steps: int | None = Field(200, ge=1, description="evaluate every N optimizer steps (and at the end); null: only at the end")
    max_eval_batches: int | None = Field(None, ge=1, description="evaluate on at most N batches of the validation data; null: all of it")
    logging_steps: int = Field(10, ge=1, description="log the training loss every N optimizer steps")
    save_steps: int | None = Field(500, ge=1, description="write a checkpoint every N optimizer steps (Ctrl-C writes one too); null: none but on Ctrl-C")
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept: the newest N")
    report_to: list[str] = Field(default_factory=lambda: ["tensorboard"], description="where the training log goes besides log_history.json: tensorboard, or [] for nowhere")
    num_threads: int | None = Field(None, ge=1, description="CPU threads torch may use (torch.set_num_threads); null: torch's default")
    gradient_checkpointing: bool = Field(
        False, description="recompute each block in the backward pass: less activation memory, ~30% more compute"
    )
    torch_compile: bool = Field(False, description="compile the model's forward with torch.compile (first steps slower)")
    early_stopping_patience: int | None = Field(None, ge=1, description="stop after N evaluations without improvement of metric_for_best_model; null: never")
    metric_for_best_model: str | None = Field(
        None, description='the evaluation metric that picks the best checkpoint, e.g. accuracy or eval_f1 ("eval_" is added as in '
        "transformers' Trainer); null: the task's main metric"
    )
    greater_is_better: bool | None = Field(None, description="whether a larger metric_for_best_model is better; null: yes unless the metric is a loss")

    _lists = field_validator("report_to", mode="before")(_as_list)

    @field_validator("metric_for_best_model")
    @classmethod
    def _eval_prefix(cls, value: str | None) -> str | None:
        """`accuracy` means `eval_accuracy`, as in transformers' Trainer (the keys evaluation logs are prefixed)."""
        return value if value is None or value.startswith("eval_") else f"eval_{value}"

    @field_validator("lr_scheduler_type")
    @classmethod
    def _known_schedule(cls, value: str) -> str:
        from transformers import SchedulerType

        names = [s.value for s in SchedulerType]
        if value not in names:
            raise ValueError(f"unknown schedule {value!r}; use one of {', '.join(names)}")
        return value

    @model_validator(mode="after")
    def _has_budget(self) -> TrainingSection:
        if not any((self.max_steps, self.num_train_epochs, self.max_tokens, self.max_time_minutes)):
            self.num_train_epochs = 1.0
        return self


class OutputSection(Section):
    output_dir: str = Field("runs/pretrain", description="the run folder (-o on the command line)")
    overwrite: bool = Field(False, description="replace what the output folder holds (--overwrite); otherwise a finished run there is refused")
    push_to_hub: bool = Field(False, description="upload the finished run to the Hub (--push-to-hub); login and repository are checked before training")
    hub_model_id: str | None = Field(None, description="the Hub repository, OWNER/NAME (--hub-model-id)")
    hub_private: bool = Field(False, description="create the Hub repository as private")
    keep_checkpoint: bool = Field(
        True, description="hftk pretrain: a finished run keeps its newest checkpoint (optimizer state, to train on); false: none"
    )
    license: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9.+-]*$",
        description="the model card's licence (a Hub licence id such as apache-2.0, mit, cc-by-4.0, other); "
        "default: what the data allows (see hftk/reporting/provenance.py)",
    )


class PretrainDistillSection(Section):
    """General distillation (`hftk.objectives.distill`): a same-objective teacher's soft targets over the vocabulary."""

    teacher: str | None = Field(None, description="a masked-LM (objective mlm) or causal-LM (clm) folder; the student uses its tokenizer")
    temperature: float = Field(2.0, gt=0, description="T: softens both distributions; the soft loss is scaled by T²")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the soft targets; 1 − alpha weights the MLM/CLM loss")
    hidden_weight: float = Field(0.0, ge=0, description="weight of the hidden-state MSE (learned projection when widths differ)")
    student_layers: list[int] | None = Field(None, description="initialise the student from these teacher layers (model.config empty)")


class ElectraSection(Section):
    """`objective: electra` (Clark et al., 2020): the generator's size and the loss weight.

    Sizes left out are resolved from the discriminator (`model.config`): a quarter of its
    width, its depth, a head per 64 features at least 1, and 4x the width for the feed-forward.
    """

    generator_hidden_size: int | None = Field(None, ge=1, description="default: a quarter of the discriminator's width")
    generator_num_hidden_layers: int | None = Field(None, ge=1, description="default: the discriminator's depth")
    generator_num_attention_heads: int | None = Field(None, ge=1, description="default: one head per 64 features of the generator's width, at least 1")
    generator_intermediate_size: int | None = Field(None, ge=1, description="default: 4x the generator's width")
    discriminator_weight: float = Field(50.0, gt=0, description="lambda: loss = generator MLM + lambda * discriminator")
    temperature: float = Field(1.0, gt=0, description="the generator's softmax temperature when sampling replacements")


def resolve_generator_sizes(section: ElectraSection, discriminator) -> ElectraSection:
    """Every generator size set: given ones kept, the rest from the discriminator config. ValueError if the generator is larger."""
    hidden = section.generator_hidden_size or max(1, discriminator.hidden_size // 4)
    layers = section.generator_num_hidden_layers or discriminator.num_hidden_layers
    if hidden > discriminator.hidden_size:
        raise ValueError(
            f"electra.generator_hidden_size ({hidden}) exceeds the discriminator's hidden_size ({discriminator.hidden_size}): "
            "the generator must be smaller (the paper uses 1/4 to 1/2 of the width)"
        )
    if layers > discriminator.num_hidden_layers:
        raise ValueError(
            f"electra.generator_num_hidden_layers ({layers}) exceeds the discriminator's num_hidden_layers "
            f"({discriminator.num_hidden_layers}): the generator must not be deeper"
        )
    heads = section.generator_num_attention_heads
    if heads is None:  # the discriminator's head size where it divides the width, else fewer, wider heads
        heads = max(1, round(discriminator.num_attention_heads * hidden / discriminator.hidden_size))
        while hidden % heads:
            heads -= 1
    if hidden % heads:
        raise ValueError(f"electra.generator_hidden_size ({hidden}) must be a multiple of electra.generator_num_attention_heads ({heads})")
    intermediate = section.generator_intermediate_size or max(
        1, discriminator.intermediate_size * hidden // discriminator.hidden_size
    )
    return section.model_copy(
        update=dict(
            generator_hidden_size=hidden,
            generator_num_hidden_layers=layers,
            generator_num_attention_heads=heads,
            generator_intermediate_size=intermediate,
        )
    )


class PretrainRecipe(Section):
    """`hftk pretrain`: objective, model, tokenizer, data, training and output."""

    objective: Literal["mlm", "clm", "electra", "denoise"] = Field("mlm", description="what the model learns: mlm (masked LM, hftk_bert), clm (next token, hftk_gpt), electra (replaced-token detection, hftk_bert) or denoise (BART/T5 denoising, hftk_seq2seq)")
    model: ModelSection = Field(default_factory=ModelSection)
    tokenizer: TokenizerSection = Field(default_factory=TokenizerSection)
    data: PretrainDataSection = Field(default_factory=PretrainDataSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    output: OutputSection = Field(default_factory=OutputSection)
    distill: PretrainDistillSection = Field(default_factory=PretrainDistillSection)
    electra: ElectraSection | None = Field(None, exclude_if=lambda value: value is None)

    @model_validator(mode="after")
    def _consistent(self) -> PretrainRecipe:
        from hftk.models import MODEL_TYPES

        expected = {"mlm": "hftk_bert", "clm": "hftk_gpt", "electra": "hftk_bert", "denoise": "hftk_seq2seq"}[self.objective]
        if self.model.type is None:
            self.model.type = expected
        elif self.model.type != expected:
            raise ValueError(f"model.type {self.model.type} does not fit objective {self.objective} (use {expected})")
        if self.tokenizer.kind is None:
            self.tokenizer.kind = {"mlm": "wordpiece", "clm": "bpe", "electra": "wordpiece", "denoise": "seq2seq"}[self.objective]
        if self.distill.teacher and self.objective == "electra":
            raise ValueError("distill.teacher distils a masked-LM or causal-LM teacher (objective mlm or clm), not electra: drop one of them")
        if self.electra is not None and self.objective != "electra":
            raise ValueError(f"electra.* keys apply to objective electra only (objective is {self.objective}): remove them or set objective=electra")
        config_fields = {field.name: field for field in dataclasses.fields(MODEL_TYPES[self.model.type])}
        unknown = sorted(set(self.model.config) - set(config_fields))
        if unknown:
            raise ValueError(
                f"unknown key(s) model.config.{', model.config.'.join(unknown)} for {self.model.type}"
                f"{did_you_mean(unknown[0], config_fields, prefix='model.config.')}"
            )
        try:  # the config class's own checks (head sizes, allowed names), before any work
            MODEL_TYPES[self.model.type](**self.model.config)
        except (ValueError, TypeError) as error:
            raise ValueError(f"model.config: {str(error).splitlines()[0]}") from None
        _check_streaming(self)
        positions = self.model.config.get("max_position_embeddings")
        if positions is None and self.model.name_or_path is None:
            positions = config_fields["max_position_embeddings"].default
        if positions is not None and self.data.max_seq_length > positions:
            raise ValueError(
                f"data.max_seq_length ({self.data.max_seq_length}) exceeds model.config.max_position_embeddings "
                f"({positions}); lower the first or raise the second"
            )
        if self.objective == "electra" and self.model.name_or_path is None:
            sizes = resolve_generator_sizes(self.electra or ElectraSection(), MODEL_TYPES["hftk_bert"](**self.model.config))
            if self.electra != sizes:
                self.electra = sizes  # validates again, with every size now set
        return self


def _check_streaming(recipe: PretrainRecipe) -> None:
    """`data.streaming` reads the corpus once, front to back: refuse what needs all of it first."""
    data, training = recipe.data, recipe.training
    if not data.streaming:
        stray = sorted({"shuffle_buffer_size", "tokenizer_sample_lines"} & data.model_fields_set)
        if stray:
            raise ValueError(f"data.{stray[0]} is only used with data.streaming: true; set that or drop data.{stray[0]}")
        return
    if not (training.max_steps or training.max_tokens) or training.num_train_epochs is not None:
        raise ValueError(
            "data.streaming needs training.max_steps or training.max_tokens, not training.num_train_epochs "
            "(a streamed corpus has no length to count epochs in)"
        )
    if not data.validation_files and data.dataset_name is None:
        raise ValueError(
            "data.streaming needs data.validation_files: holding out data.validation_split_percentage of the lines "
            "needs the whole corpus"
        )
    if data.preprocessing_num_workers is not None:
        raise ValueError("data.preprocessing_num_workers is for the cached path; drop it with data.streaming (tokenized on the fly)")


class FinetuneDataSection(Section):
    dataset_name: str | None = Field(None, description="a Hub data set to fine-tune on instead of local files")
    dataset_config: str | None = Field(None, description="the Hub data set's configuration name, if it has several")
    train_file: str | None = Field(None, description="training data: a jsonl, csv or parquet file in the Hub's column layout for the task")
    validation_file: str | None = Field(None, description="evaluation data; it also picks the best checkpoint")
    test_file: str | None = Field(None, description="scored once at the end with the shipped model (test_* metrics)")
    glue_task: str | None = Field(None, description="glue: the GLUE task (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli; --task on the command line)")
    text_column: str | None = Field(None, description="classification: the text column; null: text")
    text_pair_column: str | None = Field(None, description="classification: a second text column for sentence pairs; null: single texts")
    label_column: str = Field("label", description="classification: the label column (strings or class ids; lists: multi-label; floats: regression)")
    tokens_column: str = Field("tokens", description="ner: the column of word lists")
    tags_column: str = Field("ner_tags", description="ner: the column of tag lists (names or ids)")
    label_all_tokens: bool = Field(False, description="ner: label every sub-token of a word, not only the first")
    source_column: str = Field("document", description="generation/summarization: the source text column")
    target_column: str = Field("summary", description="generation/summarization: the target text column")
    prompt_template: str | None = Field(None, description='default "{document}\\nTL;DR:"')
    source_lang: str | None = Field(None, description="translation: key of the source text in the `translation` column (e.g. es)")
    target_lang: str | None = Field(None, description="translation: key of the target text in the `translation` column (e.g. en)")
    source_prefix: str = Field("", description='translation/summarization: text put before every source (T5: "translate Spanish to English: ")')
    max_target_length: int | None = Field(None, ge=2, description="translation/summarization: target tokens kept for training; null: max_seq_length")
    max_seq_length: int | None = Field(None, ge=8, description="null: the task's default, at most the model's positions")
    doc_stride: int | None = Field(None, ge=1, description="QA window overlap; null: derived from max_seq_length")
    version_2_with_negative: bool = Field(False, description="qa: SQuAD v2, questions may have no answer in the context")
    n_best_size: int = Field(20, ge=1, description="qa: start and end candidates kept per window when extracting answers")
    max_answer_length: int = Field(30, ge=1, description="qa: longest answer, in tokens")
    null_score_diff_threshold: float = Field(0.0, description="qa v2: answer 'no answer' when its score beats the best span's by more than this")
    max_train_samples: int | None = Field(None, ge=1, description="train on at most N examples (the first N, or a random N with train_sample_seed)")
    max_eval_samples: int | None = Field(None, ge=1, description="evaluate on at most the first N validation (and test) examples")
    train_sample_seed: int | None = Field(
        None, description="with max_train_samples: draw that many training examples at random with this seed, not the first ones"
    )


class LoraSection(Section):
    r: int = Field(0, ge=0, description="rank; 0 disables LoRA")
    alpha: int = Field(16, ge=1, description="LoRA's scaling numerator: updates are scaled by alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA branch's input")
    target_modules: list[str] | None = Field(None, description="names of the Linear layers that get adapters; null: the model type's attention and feed-forward projections")
    merge: bool = Field(True, description="save the model with the adapters merged into its weights (the adapter alone is in adapter/ either way)")

    _lists = field_validator("target_modules", mode="before")(_as_list)


class FinetuneTrainingSection(TrainingSection):
    """Fine-tuning's training options: the peak learning rate may be left to the model (null)."""

    learning_rate: float | None = Field(
        None, gt=0, description="peak LR; null: by model (hftk's pre-LN encoders 3e-4, other checkpoints 1e-4)"
    )
    min_steps: int | None = Field(
        300, ge=1, description="num_train_epochs trains at least this many optimizer steps: a small training set "
        "is seen for more epochs (at 3 epochs, 1,000 examples are 96 steps, too few to leave the majority class); "
        "ignored when max_steps is set; null: epochs only"
    )
    group_by_length: bool = Field(
        False, description="batch examples of similar length (transformers' LengthGroupedSampler): less padding, faster steps"
    )
    label_smoothing_factor: float = Field(
        0.0, ge=0, lt=1, description="translation/summarization/generation: label smoothing of the training loss on the target tokens (the Transformer paper: 0.1)"
    )


class GenerationSection(Section):
    max_new_tokens: int = Field(32, ge=1, description="most tokens generated per example when scoring")
    num_beams: int = Field(1, ge=1, description="beam size (1: greedy)")
    length_penalty: float = Field(1.0, description="beam search: exponent on the length a hypothesis score is divided by (>1 favours longer)")
    do_sample: bool = Field(False, description="sample instead of greedy or beam search")
    temperature: float = Field(1.0, gt=0, description="sampling temperature (with do_sample)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling: keep the smallest set of tokens whose probability reaches top_p (with do_sample)")


class FinetuneRecipe(Section):
    """`hftk finetune TASK`: a model to start from, task data, training, LoRA and output."""

    task: TaskName = Field(description="the task: glue, classification, qa, ner, generation, translation or summarization (the command's TASK argument)")
    model: FinetuneModelSection = Field(default_factory=FinetuneModelSection)
    data: FinetuneDataSection = Field(default_factory=FinetuneDataSection)
    training: FinetuneTrainingSection = Field(
        default_factory=lambda: FinetuneTrainingSection(warmup_ratio=0.1, max_grad_norm=1.0, num_train_epochs=3)
    )
    lora: LoraSection = Field(default_factory=LoraSection)
    generation: GenerationSection = Field(default_factory=GenerationSection)
    output: OutputSection = Field(default_factory=lambda: OutputSection(output_dir="runs/finetune"))

    @model_validator(mode="before")
    @classmethod
    def _new_model_type(cls, data: Any) -> Any:
        """`--model new:TYPE` is `--model new` with model.new.type=TYPE (the recipe's sizes kept)."""
        model = data.get("model") if isinstance(data, dict) else None
        if not isinstance(model, dict) or not isinstance(model.get("name_or_path"), str):
            return data
        kind, model_type = model_source(model["name_or_path"])
        if kind == "new" and model_type is not None:
            new = model.get("new") if isinstance(model.get("new"), dict) else {}
            data = {**data, "model": {**model, "name_or_path": NEW_MODEL, "new": {**new, "type": model_type}}}
        return data

    @model_validator(mode="after")
    def _model_source_fits(self) -> FinetuneRecipe:
        """`--model new` / `random:FOLDER`: what they need, and the options that cannot apply to them."""
        kind, detail = model_source(self.model.name_or_path)
        if kind == "checkpoint":
            return self
        if kind == "new":
            if self.model.new is None:
                raise ValueError(
                    f"--model new builds the model of the recipe's model.new section, and this {self.task} recipe has none: "
                    "add model.new.type and model.new.config to the recipe, or name a type (--model new:hftk_bert)"
                )
            what = "a fresh model (--model new)"
        else:
            if not detail:
                raise ValueError("--model random:FOLDER needs a folder after random:, e.g. --model random:runs/pretrain-default")
            what = f"a random-init twin (--model {self.model.name_or_path})"
        if self.lora.r > 0:
            raise ValueError(
                f"LoRA (lora.r={self.lora.r}) adapts pretrained weights, and {what} has none to keep: "
                "drop lora.r, or start from a pretrained folder"
            )
        if self.model.reinit_top_layers:
            raise ValueError(f"model.reinit_top_layers re-draws pretrained blocks, and {what} has none: drop it")
        return self


# ---------------------------------------------------------------------------------------------
# Loading, overrides, error messages
# ---------------------------------------------------------------------------------------------
