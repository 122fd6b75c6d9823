"""The models a fine-tuning task can start from without pretrained weights.

- `--model new`: the recipe's `model.new` section (type, sizes, tokenizer options) built from
  scratch, with a tokenizer trained on the task's own training text. The same data and seed give
  the same tokenizer and the same initial weights, so a from-scratch run is reproducible, and both
  are saved with the run like any fine-tuned model.
- `--model random:FOLDER`: FOLDER's random-init twin: its config and tokenizer, fresh weights
  (drawn with `training.seed`). Fine-tuned with the same recipe as FOLDER, it is the baseline
  that tells what pretraining bought.

transformers builds fresh weights with `from_config`; what it has no API for is the pairing of a
recipe's sizes with a tokenizer trained for the task, which is what this module does.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

from transformers import PreTrainedConfig, PreTrainedModel

from hftk.data.tokenizer import load_tokenizer, tokenizer_config_fields, train_tokenizer
from hftk.errors import HftkError
from hftk.models import MODEL_TYPES
from hftk.tasks.training_text import training_texts

# The tokenizer that suits each architecture (the pretraining recipes' choices).
TOKENIZER_KINDS = {"hftk_bert": "wordpiece", "hftk_gpt": "bpe", "hftk_seq2seq": "seq2seq"}


def fresh_tokenizer_and_config(recipe, resume_folder: Path | None = None, echo=print):
    """The tokenizer and config of `--model new`: trained on the task's training text, sized by model.new.

    `resume_folder`: a checkpoint's model folder, whose tokenizer the resumed run keeps.
    """
    spec = recipe.model.new
    options = spec.tokenizer
    if resume_folder is not None:
        tokenizer = load_tokenizer(str(resume_folder))
    elif options.name_or_path:
        tokenizer = load_tokenizer(options.name_or_path)
    else:
        kind = options.kind or TOKENIZER_KINDS[spec.type]
        texts = training_texts(recipe)
        echo(f"--model new: training a {kind} tokenizer ({options.vocab_size} tokens) on {len(texts):,} texts of the training data")
        tokenizer = train_tokenizer(texts, kind=kind, vocab_size=options.vocab_size, min_frequency=options.min_frequency)
    config_class = MODEL_TYPES[spec.type]
    unknown = sorted(set(recipe.model.config) - {field.name for field in dataclasses.fields(config_class)})
    if unknown:
        raise HftkError(f"model.config.{unknown[0]}: not a field of {config_class.__name__} (--model new builds {spec.type})")
    fields = {**spec.config, **recipe.model.config, **tokenizer_config_fields(spec.type, tokenizer)}
    try:
        config = config_class(**fields)
    except (ValueError, TypeError) as error:
        raise HftkError(f"model.config: {str(error).splitlines()[0]}") from None
    # The tokenizer's truncation default is what the model takes, never more (nor the 512 it was trained with).
    tokenizer.model_max_length = config.max_position_embeddings
    return tokenizer, config


def build_fresh_head(auto_class, config: PreTrainedConfig, head_fields: dict[str, Any], attn_implementation: str) -> PreTrainedModel:
    """The task's head model on `config`, every weight freshly initialised (seed it first).

    `head_fields` are the task's config fields (num_labels, id2label, problem_type, ...), set on a
    copy of the config as `from_pretrained(**kwargs)` would set them.
    """
    config = copy.deepcopy(config)
    for key, value in head_fields.items():
        setattr(config, key, value)
    return auto_class.from_config(config, attn_implementation=attn_implementation)
