"""Loading a task's splits: local files in the Hub's column layouts, or a Hub data set."""

from __future__ import annotations

import codecs
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import datasets

from hftk.errors import HftkError

# Local file suffix -> `datasets` packaged builder (the same layouts as on the Hub).
_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}


def load_splits(
    *,
    dataset_name: str | None = None,
    dataset_config: str | None = None,
    data_files: Mapping[str, str | None] | None = None,
    cache_dir: str | None = None,
) -> datasets.DatasetDict:
    """Local files (jsonl/json/csv/tsv/parquet, one per split) if given, else a Hub data set.

    Local files win so that users without network can pass the same column layout as the Hub.
    """
    files = {split: path for split, path in (data_files or {}).items() if path}
    if files:
        return _load_local(files, cache_dir)
    if not dataset_name:
        raise HftkError(
            "no data: pass local files (--set data.train_file=train.jsonl --set data.validation_file=dev.jsonl) "
            "or a Hub data set (--set data.dataset_name=NAME)"
        )
    try:
        return datasets.load_dataset(dataset_name, dataset_config, cache_dir=cache_dir)
    except (ConnectionError, FileNotFoundError, ValueError, OSError) as err:
        config = f" (config {dataset_config!r})" if dataset_config else ""
        raise HftkError(
            f"could not load data set {dataset_name!r}{config} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            "check the name, or pass local files with --set data.train_file=... --set data.validation_file=..."
        ) from err


def _load_local(files: dict[str, str], cache_dir: str | None) -> datasets.DatasetDict:
    builders = set()
    for split, path in files.items():
        if not os.path.isfile(path):
            raise HftkError(f"{split} file {path!r} does not exist; check the path")
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in _BUILDERS:
            raise HftkError(
                f"{split} file {path!r} has an unsupported extension {suffix!r}; use one of {', '.join(sorted(_BUILDERS))}"
            )
        if suffix != ".parquet":
            check_text_file(split, path)
        builders.add((_BUILDERS[suffix], suffix == ".tsv"))
    if len(builders) > 1:
        raise HftkError(f"local data files must share one format, got {sorted(files.values())}")
    builder, is_tsv = builders.pop()
    kwargs = {"delimiter": "\t"} if is_tsv else {}
    # One split at a time: splits may differ in schema (a test file without labels, ids vs names).
    splits = {}
    for split, path in files.items():
        try:
            splits[split] = datasets.load_dataset(builder, data_files={split: path}, split=split, cache_dir=cache_dir, **kwargs)
        except datasets.exceptions.DatasetGenerationError as err:
            raise HftkError(f"could not read {split} file {path!r} as {builder}: {err.__cause__ or err}") from err
        if len(splits[split]) == 0:
            raise HftkError(f"{split} file {path!r} has no rows; add examples or point at another file")
    return datasets.DatasetDict(splits)


def check_text_file(split: str, path: str) -> None:
    """HftkError for an empty or non-UTF-8 text data file, found before any work.

    `datasets` reads such files without complaint and fails later, deep in arrow (a bare
    StopIteration for an empty file, a UnicodeDecodeError when a column is read).
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    line, has_text = 1, False
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            try:
                has_text = bool(decoder.decode(chunk).strip()) or has_text
            except UnicodeDecodeError as err:
                line += err.object[: err.start].count(b"\n")
                raise HftkError(
                    f"{split} file {path!r} is not UTF-8 text (byte 0x{err.object[err.start]:02x} on line {line}); "
                    "convert it, e.g. iconv -f latin1 -t utf-8"
                ) from None
            line += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise HftkError(f"{split} file {path!r} is not UTF-8 text (it ends inside a character); convert it to UTF-8") from None
    if not has_text:
        raise HftkError(f"{split} file {path!r} is empty; add examples or point at another file")


def take(dataset: datasets.Dataset, max_samples: int | None, seed: int | None = None) -> datasets.Dataset:
    """The first `max_samples` rows (quick runs), or with `seed` that many rows drawn at random.

    The random draw is a label-budget subset for learning curves: each seed a different sample,
    so the spread over seeds includes which examples happened to be labelled. Asking for more
    rows than there are is then an error (a curve point would silently repeat the full set).
    """
    if seed is not None and max_samples is not None and max_samples > len(dataset):
        raise HftkError(
            f"data.max_train_samples ({max_samples}) with data.train_sample_seed is larger than the training set "
            f"({len(dataset)} examples): ask for at most {len(dataset)}"
        )
    if max_samples is None or max_samples >= len(dataset):
        return dataset
    if seed is not None:
        return dataset.shuffle(seed=seed).select(range(max_samples)).flatten_indices()
    return dataset.select(range(max_samples))


@dataclass(frozen=True)
class DataSource:
    """Where a task's examples come from and how many it takes: the data keywords every `prepare_*` shares.

    Local files (one per split) win over a Hub data set; `max_*_samples` cap the splits,
    `train_sample_seed` draws the training rows at random instead of taking the first ones.
    """

    dataset_name: str | None = None
    dataset_config: str | None = None
    train_file: str | None = None
    validation_file: str | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    train_sample_seed: int | None = None

    @classmethod
    def from_recipe(cls, data: Any) -> DataSource:
        """The source a recipe's `data` section names."""
        return cls(**{field.name: getattr(data, field.name) for field in fields(cls)})

    def keywords(self, *, hub: bool = True) -> dict[str, Any]:
        """The `prepare_*` keywords; `hub=False` leaves out the Hub name (GLUE knows its own)."""
        found = asdict(self)
        if not hub:
            del found["dataset_name"], found["dataset_config"]
        return found

    def training_rows(self, split: str = "train") -> datasets.Dataset:
        """The training split as a task trains on it: loaded, then capped or sampled."""
        raw = load_splits(dataset_name=self.dataset_name, dataset_config=self.dataset_config, data_files={split: self.train_file})
        return take(raw[split], self.max_train_samples, seed=self.train_sample_seed)
