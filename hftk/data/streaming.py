"""Stream a corpus into packed blocks on the fly (`data.streaming: true`): no Arrow cache, flat memory.

The cached path (`load_text_corpus` + `tokenize_and_pack`) writes the whole corpus, tokenized, to
disk before the first step. Here the corpus is a `datasets.IterableDataset` read as training goes:
lines -> tokens -> blocks (the same `group_texts` as the cached path) -> a seeded shuffle buffer
of blocks -> `split_dataset_by_node`, so each process trains on its own blocks.

How the processes share the stream is `split_dataset_by_node`'s rule: when the number of files
(shards) divides by the number of processes, each process reads only its own files; otherwise every
process reads and tokenizes the whole stream and keeps every N-th block, so N processes see
exactly the blocks one process would, in the same global-batch order.

Exact resume is a deterministic skip: for a given seed and epoch the stream is a pure function of
the files, so a resumed run rebuilds it and drops the blocks the checkpoint says were consumed
(`TrainState.batches_in_epoch`, saved atomically with every checkpoint). `IterableDataset.state_dict()`
would avoid re-reading, but it does not save the shuffle buffer's contents (datasets refills the
buffer on load), so the resumed run would see different blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from itertools import islice

import datasets
import torch
from datasets.distributed import split_dataset_by_node

from hftk.data.corpus import (
    _PATHS,
    TRANSLATION_COLUMN,
    _builder_for,
    _name_files,
    _non_blank,
    _sniff,
    resolve_files,
)
from hftk.data.packing import _separator_id, _tokenize_lines, block_specials, group_texts
from hftk.errors import HftkError

HUB_VALIDATION_LINES = 10_000  # a streamed Hub validation split is cut here: evaluation needs a finite set


def load_text_stream(
    sources: _PATHS | None = None,
    *,
    dataset_name: str | None = None,
    dataset_config: str | None = None,
    text_column: str = "text",
) -> datasets.IterableDataset:
    """The training corpus as an `IterableDataset` with one `text` column and no blank rows, in file order."""
    if sources is not None and dataset_name is not None:
        raise HftkError("give either local corpus files or a Hub dataset name, not both (data.train_files / data.dataset_name)")
    if dataset_name is not None:
        return _hub_stream(dataset_name, dataset_config, "train", text_column)
    if sources is None:
        from hftk.data.corpus import default_corpus_path

        sources = default_corpus_path()
    files = resolve_files(sources, "data.train_files")
    for path in files:
        _sniff(path)
    builders = {_builder_for(path) for path in files}
    if len(builders) > 1:
        raise HftkError(
            f"data.streaming reads one file type at a time, got {', '.join(sorted(builders))} ({_name_files(files)}): "
            "convert the files to one format or turn streaming off"
        )
    builder = builders.pop()
    stream = datasets.load_dataset(builder, data_files={"train": [str(p) for p in files]}, split="train", streaming=True)
    return _text_only(stream, "text" if builder == "text" else text_column, _name_files(files))


def hub_validation_lines(dataset_name: str, dataset_config: str | None, text_column: str) -> datasets.Dataset:
    """The first `HUB_VALIDATION_LINES` lines of a streamed Hub data set's validation split, in memory."""
    stream = _hub_stream(dataset_name, dataset_config, "validation", text_column)
    return datasets.Dataset.from_dict({"text": [row["text"] for row in stream.take(HUB_VALIDATION_LINES)]})


def sample_lines(stream: datasets.IterableDataset, lines: int) -> list[str]:
    """The first `lines` lines of the stream (what the tokenizer is trained on): the same on every run."""
    sample = [row["text"] for row in stream.take(lines)]
    if not sample:
        raise HftkError("the streamed corpus is empty (0 non-empty lines): add text or point data.train_files elsewhere")
    return sample


def pack_stream(
    stream: datasets.IterableDataset, tokenizer, block_size: int, *, add_special_tokens: bool, batch_size: int = 1000
) -> datasets.IterableDataset:
    """Tokenize and pack on the fly: the cached path's functions, applied lazily batch by batch."""
    cls_id, sep_id = block_specials(tokenizer, block_size, add_special_tokens)
    tokens = stream.map(
        partial(_tokenize_lines, tokenizer=tokenizer, separator=_separator_id(tokenizer), text_column="text"),
        batched=True,
        batch_size=batch_size,
        remove_columns=["text"],
    )
    return tokens.map(partial(group_texts, block_size=block_size, cls_id=cls_id, sep_id=sep_id), batched=True, batch_size=batch_size)


def shuffle_and_split(
    blocks: datasets.IterableDataset, *, seed: int, buffer_size: int, rank: int, world_size: int
) -> datasets.IterableDataset:
    """A seeded buffer shuffle (the same on every process), then this process's part of it."""
    shuffled = blocks.shuffle(seed=seed, buffer_size=buffer_size) if buffer_size > 1 else blocks
    return split_dataset_by_node(shuffled, rank=rank, world_size=world_size) if world_size > 1 else shuffled


class StreamingLoader:
    """Batches of blocks from this process's stream, on `device`, ending on every process at once.

    Not a `DataLoader` for Accelerate to prepare: the stream is already split across processes
    (Accelerate would split it again, or read it on rank 0 only and broadcast every batch).
    Before each batch the processes agree that all of them have one (`all_have`), so uneven
    shards end the epoch together instead of leaving one process waiting in a collective.
    """

    is_stream = True  # the training loop neither prepares nor measures the length of such a loader

    def __init__(
        self,
        dataset: datasets.IterableDataset,
        batch_size: int,
        device: torch.device,
        all_have: Callable[[bool], bool] = lambda has: has,
    ) -> None:
        self.dataset, self.batch_size, self.device, self.all_have = dataset, batch_size, device, all_have

    def set_epoch(self, epoch: int) -> None:
        """A new epoch reshuffles (datasets seeds the buffer and the file order with seed + epoch)."""
        self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self._batches(skip=0)

    def skip_first_batches(self, batches: int) -> Iterator[dict[str, torch.Tensor]]:
        """The epoch's stream without its first `batches` batches: rebuilt and dropped, for exact resume."""
        return self._batches(skip=batches)

    def _batches(self, skip: int) -> Iterator[dict[str, torch.Tensor]]:
        rows = (row["input_ids"] for row in self.dataset)
        if skip:
            rows = islice(rows, skip * self.batch_size, None)
        yielded = skip
        while True:
            block = list(islice(rows, self.batch_size))
            if not self.all_have(len(block) == self.batch_size):  # the short tail is dropped, as drop_last does
                if yielded == 0:
                    raise HftkError(
                        f"the streamed corpus yields fewer than {self.batch_size} blocks per process, not one batch: "
                        "lower training.per_device_train_batch_size or data.max_seq_length, or add text"
                    )
                return
            yielded += 1
            yield {"input_ids": torch.tensor(block, dtype=torch.long, device=self.device)}


def _hub_stream(name: str, config: str | None, split: str, text_column: str) -> datasets.IterableDataset:
    try:
        stream = datasets.load_dataset(name, config, split=split, streaming=True)
    except Exception as error:  # network, auth, missing config or split: all reported the same way
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise HftkError(
            f"could not stream the {split} split of Hub dataset {name!r}{f' ({config})' if config else ''}: "
            f"{type(error).__name__}: {message} -- check the name/config and your network, or use local files"
        ) from error
    return _text_only(stream, text_column, name)


def _text_only(stream: datasets.IterableDataset, column: str, where: str) -> datasets.IterableDataset:
    """Keep the text column, named `text`, without blank rows (the columns are read from the first row)."""
    first = next(iter(stream), None)
    if first is None:
        raise HftkError(f"corpus {where} is empty: add text or point data.train_files elsewhere")
    if column == "text" and column not in first and TRANSLATION_COLUMN in first:
        column = TRANSLATION_COLUMN  # translation rows: each side is text (as in the cached path)
    base, _, language = column.partition(".")
    if base == TRANSLATION_COLUMN and isinstance(first.get(TRANSLATION_COLUMN), dict):
        sides = [language] if language else list(first[TRANSLATION_COLUMN])
        if any(side not in first[TRANSLATION_COLUMN] for side in sides):
            raise HftkError(
                f"{where} has no {language!r} side in its translation column (it has {', '.join(first[TRANSLATION_COLUMN])}): "
                "set data.text_column to translation (every side) or translation.LANGUAGE with one of them"
            )

        def flatten(batch: dict[str, list]) -> dict[str, list]:
            return {"text": [(pair or {}).get(side) or "" for pair in batch[TRANSLATION_COLUMN] for side in sides]}

        return stream.map(flatten, batched=True, remove_columns=list(first)).filter(_non_blank, batched=True)
    if column not in first:
        raise HftkError(f"{where} has no column {column!r} (columns: {', '.join(first)}): set data.text_column to the column holding the text")
    stream = stream.select_columns([column])
    if column != "text":
        stream = stream.rename_column(column, "text")
    return stream.filter(_non_blank, batched=True)
