"""Tokenize a text corpus and pack it into fixed-length blocks (the `group_texts` of HF's run_mlm/run_clm).

Packing wastes no compute on padding: every row is exactly `block_size` tokens. Lines are
tokenized without special tokens and each is followed by the separator (`[SEP]` for WordPiece,
`<|endoftext|>` for BPE), so the model still sees where one document ends and the next begins.
Both steps are batched `Dataset.map` calls with picklable module-level functions, so `datasets`
fingerprints them and a second run with the same corpus, tokenizer and block size loads from cache.
"""

from __future__ import annotations

from functools import partial

import datasets

from hftk.errors import HftkError


def tokenize_and_pack(
    dataset: datasets.Dataset,
    tokenizer,
    block_size: int,
    *,
    add_special_tokens: bool,
    num_proc: int | None = None,
    desc: str = "corpus",
    text_column: str = "text",
    batch_size: int = 1000,
) -> datasets.Dataset:
    """Return a dataset with one `input_ids` column (int64, exactly `block_size` per row).

    With `add_special_tokens` (MLM), each block is `[CLS] + block_size-2 tokens + [SEP]`, the
    layout BERT saw in pretraining; otherwise (CLM) blocks are raw token runs. Within each map
    batch of `batch_size` lines the short final chunk is dropped rather than padded: padding
    would put pad tokens (and, for CLM, pad labels) into pretraining, and the loss is at most one
    block per batch of lines.
    """
    separator = _separator_id(tokenizer)
    cls_id, sep_id = block_specials(tokenizer, block_size, add_special_tokens)
    if text_column not in dataset.column_names:
        raise HftkError(f"dataset has no column {text_column!r} (columns: {', '.join(dataset.column_names)}): load it with load_text_corpus")

    tokenized = dataset.map(
        partial(_tokenize_lines, tokenizer=tokenizer, separator=separator, text_column=text_column),
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc,
        remove_columns=dataset.column_names,
        features=datasets.Features({"input_ids": datasets.List(datasets.Value("int32"))}),
        desc=f"Tokenizing {desc}",
    )
    packed = tokenized.map(
        partial(group_texts, block_size=block_size, cls_id=cls_id, sep_id=sep_id),
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc,
        # Fixed-length lists become Arrow FixedSizeList: `with_format("torch")` then stacks a batch
        # from one contiguous buffer, and int64 is what embeddings and the loss take without a copy.
        features=datasets.Features({"input_ids": datasets.List(datasets.Value("int64"), length=block_size)}),
        desc=f"Packing {desc} into blocks of {block_size}",
    )
    if len(packed) == 0:
        n_tokens = sum(len(ids) for ids in tokenized["input_ids"])
        raise HftkError(
            f"corpus too small for block_size {block_size}: {desc} has {len(dataset)} lines, {n_tokens} tokens and yields 0 blocks; "
            "lower data.max_seq_length or add text"
        )
    return packed


def block_specials(tokenizer, block_size: int, add_special_tokens: bool) -> tuple[int | None, int | None]:
    """The [CLS] and [SEP] ids that frame each block (None, None for raw token runs); HftkError if impossible."""
    content = block_size - 2 if add_special_tokens else block_size
    if content < 1:
        raise HftkError(f"block_size {block_size} is too small: use at least {3 if add_special_tokens else 2} (data.max_seq_length)")
    cls_id = sep_id = None
    if add_special_tokens:
        cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        if cls_id is None or sep_id is None:
            raise HftkError(
                f"MLM packing needs a tokenizer with [CLS] and [SEP] tokens, {type(tokenizer).__name__} has none: "
                "use a WordPiece tokenizer (tokenizer.kind: wordpiece)"
            )
    return cls_id, sep_id


def group_texts(
    examples: dict[str, list[list[int]]], *, block_size: int, cls_id: int | None = None, sep_id: int | None = None
) -> dict[str, list[list[int]]]:
    """Concatenate a batch of token lists and cut it into blocks of `block_size`, dropping the short tail.

    With `cls_id`/`sep_id` each block is `[cls_id] + block_size-2 tokens + [sep_id]`.
    """
    with_specials = cls_id is not None
    content = block_size - 2 if with_specials else block_size
    flat = [token for ids in examples["input_ids"] for token in ids]
    usable = len(flat) // content * content
    blocks = [flat[start : start + content] for start in range(0, usable, content)]
    if with_specials:
        blocks = [[cls_id, *block, sep_id] for block in blocks]
    return {"input_ids": blocks}


def _tokenize_lines(
    examples: dict[str, list[str]], *, tokenizer, separator: int, text_column: str
) -> dict[str, list[list[int]]]:
    # verbose=False: long paragraphs exceed model_max_length here on purpose; they are cut into blocks next.
    encoded = tokenizer(examples[text_column], add_special_tokens=False, verbose=False)["input_ids"]
    return {"input_ids": [[*ids, separator] for ids in encoded]}


def _separator_id(tokenizer) -> int:
    """`[SEP]` for BERT-style tokenizers, else `<|endoftext|>` (eos) for GPT-style ones."""
    for token_id in (tokenizer.sep_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return token_id
    raise HftkError(
        f"tokenizer {type(tokenizer).__name__} has neither a sep nor an eos token to mark document ends: "
        "train one with train_tokenizer or add one (tokenizer.add_special_tokens)"
    )
