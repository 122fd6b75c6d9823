"""Load a raw text corpus (local files, a directory, or a Hub data set) as `train`/`validation` splits.

Every source ends up as a `datasets.Dataset` with a single `text` column and no blank rows, so the
tokenizer and the packer never need to know where the text came from. Local files go through the
matching `datasets` builder (text, json, csv, parquet), which gives us Arrow storage and its cache.
Files are sniffed *before* they reach `datasets`: a binary or non-UTF-8 file otherwise surfaces as a
long `DatasetGenerationError` traceback deep inside the builder instead of a one-line fix.
"""

from __future__ import annotations

import codecs
import gzip
import importlib.resources
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np

from hftk.errors import HftkError

# Suffix -> `datasets` builder. Longest suffixes are matched first, so `.txt.gz` wins over `.gz`.
SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".txt": "text",
    ".txt.gz": "text",
    ".jsonl": "json",
    ".jsonl.gz": "json",
    ".json": "json",
    ".json.gz": "json",
    ".csv": "csv",
    ".csv.gz": "csv",
    ".parquet": "parquet",
}
_SNIFF_BYTES = 1 << 20  # decode the first MiB; enough to catch binaries and wrong encodings early
_PATHS = str | Path | Sequence[str | Path]


def default_corpus_path() -> Path:
    """The vendored public-domain Jane Austen corpus (six novels, one paragraph a line, gzipped)."""
    path = Path(str(importlib.resources.files("hftk").joinpath("resources/austen.txt.gz")))
    if not path.is_file():
        raise HftkError(f"default corpus missing at {path}: reinstall hftk (pip install --force-reinstall hftk)")
    return path


def load_text_corpus(
    sources: _PATHS | None = None,
    *,
    dataset_name: str | None = None,
    dataset_config: str | None = None,
    text_column: str = "text",
    validation_files: _PATHS | None = None,
    validation_split_percentage: float = 5.0,
    seed: int = 42,
    cache_dir: str | None = None,
) -> datasets.DatasetDict:
    """Load a corpus as a `DatasetDict` with `train` and `validation` splits and one `text` column.

    `sources` are files or directories (searched recursively, sorted) of .txt[.gz], .json[l][.gz],
    .csv[.gz] or .parquet; with neither `sources` nor `dataset_name`, the vendored Austen corpus.
    `dataset_name` loads a Hub data set instead (needs network). Without `validation_files` (and
    without a Hub `validation` split), `validation_split_percentage` % of the rows (at least 1) are
    held out at random with `seed`; both splits keep the corpus order, so packed blocks still hold
    neighbouring paragraphs.
    """
    if sources is not None and dataset_name is not None:
        raise HftkError("give either local corpus files or a Hub dataset name, not both (data.train_files / data.dataset_name)")
    if not 0 < validation_split_percentage < 100:
        raise HftkError(
            f"validation_split_percentage must be in (0, 100), got {validation_split_percentage}; "
            "use e.g. 5, or pass validation files"
        )

    validation = None
    if dataset_name is not None:
        train, validation = _load_hub(dataset_name, dataset_config, text_column, cache_dir)
    else:
        train = _load_local(sources if sources is not None else default_corpus_path(), text_column, cache_dir, "data.train_files")
    if validation_files is not None:
        validation = _load_local(validation_files, text_column, cache_dir, "data.validation_files")
    if validation is None:
        train, validation = _hold_out(train, validation_split_percentage, seed)
    return datasets.DatasetDict({"train": train, "validation": validation})


def resolve_files(sources: _PATHS, option: str = "data.train_files") -> list[Path]:
    """Expand files and directories into the sorted list of supported files, with clear errors."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    files: list[Path] = []
    for source in sources:
        path = Path(source).expanduser()
        if not path.exists():
            raise HftkError(f"corpus path {path} does not exist: check the path ({option})")
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*")
                if p.is_file() and not _is_hidden(p, path) and _builder_for(p) is not None
            )
            if not found:
                raise HftkError(
                    f"no supported corpus files in directory {path}: add files ending in "
                    f"{', '.join(SUPPORTED_EXTENSIONS)}"
                )
            files.extend(found)
        else:
            if _builder_for(path) is None:
                raise HftkError(
                    f"unsupported corpus file type {path.name!r} ({path}): use one of {', '.join(SUPPORTED_EXTENSIONS)}"
                )
            files.append(path)
    if not files:
        raise HftkError(f"no corpus files given: pass at least one file or directory ({option})")
    return files


def _load_local(sources: _PATHS, text_column: str, cache_dir: str | None, option: str) -> datasets.Dataset:
    files = resolve_files(sources, option)
    for path in files:
        _sniff(path)
    # One `load_dataset` call per run of same-format files, concatenated so the file order is kept.
    runs: list[tuple[str, list[Path]]] = []
    for path in files:
        builder = _builder_for(path)
        if runs and runs[-1][0] == builder:
            runs[-1][1].append(path)
        else:
            runs.append((builder, [path]))
    parts = [_load_group(builder, run, text_column, cache_dir) for builder, run in runs]
    dataset = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    dataset = dataset.filter(_non_blank, batched=True, desc="Dropping blank lines")
    if len(dataset) == 0:
        raise HftkError(f"corpus {_name_files(files)} is empty (0 non-empty lines): add text or point {option} elsewhere")
    return dataset


def _load_group(builder: str, files: list[Path], text_column: str, cache_dir: str | None) -> datasets.Dataset:
    try:
        dataset = datasets.load_dataset(
            builder, data_files={"train": [str(p) for p in files]}, split="train", cache_dir=cache_dir
        )
    except (datasets.exceptions.DatasetGenerationError, UnicodeDecodeError, ValueError) as error:
        cause = error.__cause__ or error
        first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise HftkError(
            f"could not read {builder} corpus {_name_files(files)} ({type(cause).__name__}: {first_line}): "
            "fix or convert the file (UTF-8 text, JSON Lines, CSV with a header, or Parquet)"
        ) from error
    column = "text" if builder == "text" else text_column
    return _select_text(dataset, column, _name_files(files))


def _load_hub(
    name: str, config: str | None, text_column: str, cache_dir: str | None
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    try:
        loaded = datasets.load_dataset(name, config, cache_dir=cache_dir)
    except Exception as error:  # network, auth, missing config: all reported the same way
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise HftkError(
            f"could not load Hub dataset {name!r}{f' ({config})' if config else ''}: {type(error).__name__}: {message} "
            "-- check the name/config and your network, or use local files (data.train_files)"
        ) from error
    if "train" not in loaded:
        raise HftkError(f"Hub dataset {name!r} has no 'train' split (splits: {', '.join(loaded)}): pick another dataset")
    train = _select_text(loaded["train"], text_column, name).filter(_non_blank, batched=True)
    if len(train) == 0:
        raise HftkError(f"Hub dataset {name!r} has no non-empty text in column {text_column!r}: pick another column")
    validation = None
    if "validation" in loaded:
        validation = _select_text(loaded["validation"], text_column, name).filter(_non_blank, batched=True)
        validation = validation if len(validation) else None
    return train, validation


TRANSLATION_COLUMN = "translation"  # the Hub's WMT/opus layout: {"translation": {"en": ..., "es": ...}}


def _select_text(dataset: datasets.Dataset, column: str, where: str) -> datasets.Dataset:
    """Keep only the text column, named `text`, as strings.

    Translation rows are text too: `translation` (also found when the default `text` column is
    missing) gives every language's side as a row of its own, pair by pair; `translation.es` one side.
    """
    if column == "text" and column not in dataset.column_names and TRANSLATION_COLUMN in dataset.column_names:
        column = TRANSLATION_COLUMN
    base, _, language = column.partition(".")
    if base == TRANSLATION_COLUMN and not (column in dataset.column_names and isinstance(dataset.features[column], datasets.Value)):
        return _translation_text(dataset, language or None, where)
    if column not in dataset.column_names:
        raise HftkError(
            f"{where} has no column {column!r} (columns: {', '.join(dataset.column_names)}): "
            "set data.text_column to the column holding the text"
        )
    dataset = dataset.select_columns([column])
    if column != "text":
        dataset = dataset.rename_column(column, "text")
    feature = dataset.features["text"]
    if not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")):
        if not isinstance(feature, datasets.Value):
            raise HftkError(f"column {column!r} of {where} holds {feature}, not text: set data.text_column to a text column")
        dataset = dataset.cast_column("text", datasets.Value("string"))  # e.g. a CSV column pandas read as numbers
    return dataset


def _translation_text(dataset: datasets.Dataset, language: str | None, where: str) -> datasets.Dataset:
    """Each side of every translation pair as a `text` row (one `language`'s side only, if given)."""
    if TRANSLATION_COLUMN not in dataset.column_names:
        raise HftkError(
            f"{where} has no column 'translation' (columns: {', '.join(dataset.column_names)}): "
            "set data.text_column to the column holding the text"
        )
    feature = dataset.features[TRANSLATION_COLUMN]
    languages = list(feature.languages) if isinstance(feature, datasets.Translation) else list(feature) if isinstance(feature, dict) else []
    if not languages:
        raise HftkError(f"column 'translation' of {where} holds {feature}, not {{language: text}} pairs: set data.text_column to a text column")
    if language is not None and language not in languages:
        raise HftkError(
            f"{where} has no {language!r} side in its translation column (it has {', '.join(languages)}): "
            f"set data.text_column to translation (every side) or translation.LANGUAGE with one of them"
        )
    sides = [language] if language is not None else languages

    def flatten(batch: dict[str, list]) -> dict[str, list]:
        return {"text": [(pair or {}).get(side) or "" for pair in batch[TRANSLATION_COLUMN] for side in sides]}

    return dataset.map(flatten, batched=True, remove_columns=dataset.column_names, desc="translation sides as text")


def _hold_out(dataset: datasets.Dataset, percentage: float, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Random held-out rows (fixed seed), at least 1; both parts stay in corpus order."""
    n = len(dataset)
    if n < 2:
        raise HftkError(
            f"corpus has only {n} non-empty line(s), too few to hold out a validation split: add text or pass validation files"
        )
    n_validation = min(n - 1, max(1, round(n * percentage / 100)))
    chosen = np.zeros(n, dtype=bool)
    chosen[np.random.default_rng(seed).choice(n, size=n_validation, replace=False)] = True
    return dataset.select(np.flatnonzero(~chosen)), dataset.select(np.flatnonzero(chosen))


def _sniff(path: Path) -> None:
    """Fail fast, with the file name, on files `datasets` would choke on later."""
    name = path.name.lower()
    try:
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        raise HftkError(f"cannot read {path} ({error}): is it a valid {'gzip ' if name.endswith('.gz') else ''}file?") from error
    if name.endswith(".parquet"):
        if head[:4] != b"PAR1":
            raise HftkError(f"{path} is not a Parquet file (no PAR1 header): fix the file or rename it to its real type")
        return
    if b"\x00" in head:
        raise HftkError(f"{path} looks binary (contains NUL bytes; UTF-16 text also does): convert it to UTF-8 text")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < _SNIFF_BYTES)
    except UnicodeDecodeError as error:
        raise HftkError(
            f"{path} is not UTF-8 (bad byte at offset {error.start}): convert it, e.g. iconv -f latin1 -t utf-8"
        ) from error


def _builder_for(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in sorted(SUPPORTED_EXTENSIONS, key=len, reverse=True):
        if name.endswith(suffix):
            return SUPPORTED_EXTENSIONS[suffix]
    return None


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _non_blank(batch: dict[str, list]) -> list[bool]:
    return [text is not None and not text.isspace() and len(text) > 0 for text in batch["text"]]


def _name_files(files: Sequence[Path]) -> str:
    return str(files[0]) if len(files) == 1 else f"{files[0]} (+{len(files) - 1} more files)"
