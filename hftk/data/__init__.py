"""The pretraining data pipeline: raw text -> tokenizer -> packed token blocks -> masked batches.

`hftk pretrain` calls, in order: `load_text_corpus`, `train_tokenizer` (or `load_tokenizer`),
`tokenize_and_pack`, and per batch `mask_tokens` (MLM only; CLM uses labels = input_ids).
"""

from hftk.data.corpus import SUPPORTED_EXTENSIONS, default_corpus_path, load_text_corpus
from hftk.data.masking import mask_tokens
from hftk.data.packing import group_texts, tokenize_and_pack
from hftk.data.tokenizer import continuation_mask, load_tokenizer, train_tokenizer

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "continuation_mask",
    "default_corpus_path",
    "group_texts",
    "load_text_corpus",
    "load_tokenizer",
    "mask_tokens",
    "tokenize_and_pack",
    "train_tokenizer",
]
