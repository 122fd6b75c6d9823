"""Train, load and inspect tokenizers for pretraining.

Two recipes, mirroring the models they feed: BERT-style WordPiece for the encoder (`hftk_bert`),
GPT-2-style byte-level BPE for the decoder (`hftk_gpt`). Both are built with the `tokenizers`
library and wrapped in `PreTrainedTokenizerFast`, so they save with `save_pretrained`, reload
with `AutoTokenizer`, and give offsets / `word_ids()` for QA and token classification.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from hftk.errors import HftkError

WORDPIECE_SPECIALS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
ENDOFTEXT = "<|endoftext|>"
# Encoder–decoder (BART-style) specials, in id order 0-4 (hftk_seq2seq's defaults: pad 0, bos = decoder start 1,
# eos 2), then T5-style sentinels for span corruption.
SEQ2SEQ_SPECIALS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "mask_token": "<mask>"}
NUM_SENTINELS = 100
SENTINELS = [f"<extra_id_{i}>" for i in range(NUM_SENTINELS)]
_BYTE_LEVEL_SPACE = "\u0120"  # "Ġ": how ByteLevel writes a leading space


def train_tokenizer(
    texts: Iterable[str],
    *,
    kind: Literal["wordpiece", "bpe", "seq2seq"],
    vocab_size: int,
    min_frequency: int = 2,
    model_max_length: int = 512,
    batch_size: int = 1000,
) -> PreTrainedTokenizerFast:
    """Train a WordPiece (BERT-style) or byte-level BPE (GPT-2-style) tokenizer on `texts`.

    WordPiece: lower-cases and strips accents, adds `[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]`
    (token types 0/1). BPE: byte-level, so no token is ever unknown; `<|endoftext|>` is bos, eos,
    unk and pad, and no special tokens are added when encoding -- as GPT-2 -- because the packer
    already puts `<|endoftext|>` between documents and generation starts from the prompt as is.
    seq2seq: the same byte-level BPE with BART's specials (`<pad> <s> </s> <unk> <mask>`, ids 0-4) and
    100 T5 sentinels (`<extra_id_0>`...); every encoding ends in `</s>`, so a target teaches the
    decoder to stop (as BART, T5 and Marian tokenizers do).
    """
    if kind == "wordpiece":
        tokenizer, specials = _wordpiece_backend(), WORDPIECE_SPECIALS
        texts = texts if isinstance(texts, (list, tuple)) else list(texts)  # read twice below
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[*WORDPIECE_SPECIALS.values(), *_continuation_alphabet(texts, batch_size)],
            continuing_subword_prefix="##",
            show_progress=False,
        )
        minimum = len(WORDPIECE_SPECIALS) + 1
    elif kind == "seq2seq":
        tokenizer, specials = _bpe_backend(), {**SEQ2SEQ_SPECIALS, "additional_special_tokens": SENTINELS}
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[*SEQ2SEQ_SPECIALS.values(), *SENTINELS],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        minimum = 256 + len(SEQ2SEQ_SPECIALS) + NUM_SENTINELS
    elif kind == "bpe":
        tokenizer = _bpe_backend()
        specials = {"bos_token": ENDOFTEXT, "eos_token": ENDOFTEXT, "unk_token": ENDOFTEXT, "pad_token": ENDOFTEXT}
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[ENDOFTEXT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        minimum = 257  # 256 byte symbols + <|endoftext|>
    else:
        raise HftkError(f"unknown tokenizer kind {kind!r}: use 'wordpiece' (encoder/MLM), 'bpe' (decoder/CLM) or 'seq2seq'")
    if vocab_size < minimum:
        raise HftkError(f"tokenizer.vocab_size={vocab_size} is too small for {kind}: use at least {minimum} (typically 8000-32000)")

    seen = [0]  # characters of training text, counted on the way through
    tokenizer.train_from_iterator(_batches(texts, batch_size, seen), trainer=trainer)
    if seen[0] == 0:
        raise HftkError("cannot train a tokenizer: the training text is empty; add text to the corpus")
    if kind == "wordpiece":
        # A fresh backend: the continuation symbols were special only for the trainer.
        trained, tokenizer = tokenizer, _wordpiece_backend()
        tokenizer.model = _deterministic_wordpiece(trained)
        tokenizer.add_special_tokens(list(WORDPIECE_SPECIALS.values()))
        cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
    if kind == "seq2seq":
        eos_id = tokenizer.token_to_id(SEQ2SEQ_SPECIALS["eos_token"])
        tokenizer.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=True),
            processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos_id)]),
        ])
    # BERT consumes token_type_ids (segment A/B for pairs); GPT-2 does not.
    input_names = ["input_ids", "token_type_ids", "attention_mask"] if kind == "wordpiece" else ["input_ids", "attention_mask"]
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, model_max_length=model_max_length, model_input_names=input_names, **specials
    )


def tokenizer_config_fields(model_type: str, tokenizer: PreTrainedTokenizerBase) -> dict:
    """The fields of an hftk model config that come from its tokenizer: vocabulary size and special ids.

    Encoders (hftk_bert) have no BOS/EOS; the encoder–decoder's decoder starts from `<s>` and its
    labels shift right behind it.
    """
    fields = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    if model_type != "hftk_bert":
        fields.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    if model_type == "hftk_seq2seq":
        fields["decoder_start_token_id"] = tokenizer.bos_token_id
    return fields


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """Load a saved tokenizer (a directory from `save_pretrained`, or a Hub id when online)."""
    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as error:
        where = "directory" if Path(name_or_path).exists() else "path or Hub id"
        raise HftkError(
            f"cannot load a tokenizer from {where} {name_or_path!r} ({type(error).__name__}): "
            "point it at a save_pretrained directory (tokenizer.json or vocabulary files), or leave "
            "tokenizer.name_or_path unset to train one"
        ) from error


# Keys transformers 5 records in `init_kwargs` while loading (where the files came from, whether the
# Hub was reachable) and writes back on `save_pretrained`: facts about one machine's load, not
# about the tokenizer, so a saved or pushed folder must not carry them.
LOAD_TIME_KEYS = ("is_local", "local_files_only")


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, folder: str | Path) -> None:
    """`tokenizer.save_pretrained(folder)` without the load-time keys in `tokenizer_config.json`."""
    removed = {key: tokenizer.init_kwargs.pop(key) for key in LOAD_TIME_KEYS if key in tokenizer.init_kwargs}
    try:
        tokenizer.save_pretrained(str(folder))
    finally:
        tokenizer.init_kwargs.update(removed)


def continuation_mask(tokenizer: PreTrainedTokenizerBase) -> torch.BoolTensor:
    """Bool[len(tokenizer)], True for tokens that continue the previous token's word (whole-word masking).

    WordPiece: tokens with the continuation prefix (`##`). Byte-level BPE: tokens that do not start
    with `Ġ` (a leading space). Special tokens are never continuations.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise HftkError(f"whole-word masking needs a fast tokenizer, got {type(tokenizer).__name__}: set whole_word_mask: false")
    model = backend.model
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    if isinstance(model, models.WordPiece):
        prefix = model.continuing_subword_prefix
        flags = [token is not None and token.startswith(prefix) for token in tokens]
    elif isinstance(model, models.BPE) and _is_byte_level(backend):
        flags = [token is not None and not token.startswith(_BYTE_LEVEL_SPACE) for token in tokens]
    else:
        raise HftkError(
            f"whole-word masking supports WordPiece or byte-level BPE tokenizers, not {type(model).__name__}: "
            "set whole_word_mask: false"
        )
    mask = torch.tensor(flags, dtype=torch.bool)
    mask[[i for i in tokenizer.all_special_ids if i < len(mask)]] = False
    return mask


def _continuation_alphabet(texts: list[str], batch_size: int) -> list[str]:
    """The `##c` symbols the WordPiece trainer will meet, sorted: given to it as special tokens.

    Why: the trainer (tokenizers' BPE trainer behind WordPiece) breaks ties between merges of
    equal frequency by symbol id, and hands out the ids of continuation symbols (`##c`) in the
    order it iterates a randomly seeded Rust hash map of words -- so the *set* of learned
    pieces changed from process to process (PYTHONHASHSEED plays no part; tokenizers 0.23 has
    no option to fix it). Special tokens get their ids first, in the order given, so listing
    the continuation symbols there, sorted, makes every id and hence every merge deterministic.
    The set comes from a first pass of the same trainer stopped before any merge (vocab_size 0),
    so it is exactly the symbols that training creates; that pass costs one extra read of the text.
    """
    probe = _wordpiece_backend()
    trainer = trainers.WordPieceTrainer(vocab_size=0, continuing_subword_prefix="##", show_progress=False)
    probe.train_from_iterator(_batches(texts, batch_size, [0]), trainer=trainer)
    return sorted(token for token in probe.get_vocab() if token.startswith("##"))


def _deterministic_wordpiece(tokenizer: Tokenizer) -> models.WordPiece:
    """Renumber a trained WordPiece vocabulary so the same corpus always gives the same ids.

    The trainer hands out ids in hash-map order, which changes from process to process;
    a recipe run twice (or resumed) must see the same ids. WordPiece encodes by longest match,
    so ids carry no meaning beyond identity: specials keep theirs, then the alphabet and the
    learned pieces follow in sorted order.
    """
    ordered = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    specials = [token for token, _ in ordered if token in WORDPIECE_SPECIALS.values()]
    alphabet = sorted(
        (token for token, _ in ordered if token not in specials and len(token.removeprefix("##")) == 1),
        key=lambda token: (token.startswith("##"), token),
    )
    merged = sorted(
        (token for token, _ in ordered if token not in specials and len(token.removeprefix("##")) != 1),
        key=lambda token: (token.startswith("##"), token),
    )
    vocab = {token: index for index, token in enumerate([*specials, *alphabet, *merged])}
    return models.WordPiece(vocab=vocab, unk_token="[UNK]", continuing_subword_prefix="##")


def _wordpiece_backend() -> Tokenizer:
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def _bpe_backend() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    # Adds no tokens; trims the leading-space byte from offsets so QA/NER spans point at the word.
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    return tokenizer


def _is_byte_level(backend: Tokenizer) -> bool:
    pre = backend.pre_tokenizer
    if isinstance(pre, pre_tokenizers.ByteLevel):
        return True
    return isinstance(pre, pre_tokenizers.Sequence) and "ByteLevel" in str(backend.to_str())


def _batches(texts: Iterable[str], size: int, seen: list[int]) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        seen[0] += len(text.strip())
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
