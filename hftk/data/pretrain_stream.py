"""`hftk pretrain` with `data.streaming: true`: the training stream, its tokenizer and the validation blocks.

Kept apart from the cached path so that it stays as it was: `hftk.commands.pretrain` calls
`streaming_data` instead of `load_text_corpus` + `tokenize_and_pack` and hands the loader to the
same training loop (which recognises a stream and neither prepares nor measures it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import datasets
import torch
from accelerate import Accelerator

from hftk.data.corpus import _load_local
from hftk.data.packing import tokenize_and_pack
from hftk.data.streaming import (
    StreamingLoader,
    hub_validation_lines,
    load_text_stream,
    pack_stream,
    sample_lines,
    shuffle_and_split,
)
from hftk.recipe import PretrainRecipe


def streaming_data(
    recipe: PretrainRecipe,
    accelerator: Accelerator,
    resume_from: Path | None,
    build_tokenizer: Callable[[PretrainRecipe, datasets.DatasetDict, Path | None], object],
):
    """Return (tokenizer, training loader over this process's blocks, packed validation set)."""
    data, training = recipe.data, recipe.training
    stream = load_text_stream(
        data.train_files or None, dataset_name=data.dataset_name, dataset_config=data.dataset_config, text_column=data.text_column
    )
    if data.validation_files:
        validation = _load_local(data.validation_files, data.text_column, None, "data.validation_files")
    else:  # the recipe check allows this only for a Hub data set
        validation = hub_validation_lines(data.dataset_name, data.dataset_config, data.text_column)
    # A tokenizer trained here sees only the first lines: a bounded, reproducible sample of the stream.
    needs_sample = resume_from is None and not recipe.tokenizer.name_or_path
    sample = sample_lines(stream, data.tokenizer_sample_lines) if needs_sample else []
    tokenizer = build_tokenizer(recipe, datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": sample})}), resume_from)

    mlm = recipe.objective in ("mlm", "electra")  # encoder blocks carry [CLS] ... [SEP]
    blocks = shuffle_and_split(
        pack_stream(stream, tokenizer, data.max_seq_length, add_special_tokens=mlm),
        seed=training.seed,
        buffer_size=data.shuffle_buffer_size,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
    )

    def all_have(has: bool) -> bool:
        if accelerator.num_processes == 1:
            return has
        flags = accelerator.reduce(torch.tensor([int(has)], device=accelerator.device), reduction="sum")
        return int(flags.item()) == accelerator.num_processes

    loader = StreamingLoader(blocks, training.per_device_train_batch_size, accelerator.device, all_have)
    packed_validation = tokenize_and_pack(
        validation, tokenizer, data.max_seq_length, add_special_tokens=mlm, desc="validation"
    ).with_format("torch")
    return tokenizer, loader, packed_validation
