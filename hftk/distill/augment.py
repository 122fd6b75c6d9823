"""Teacher-labelled augmentation: extra training rows that carry no hard label.

Rows from `data.unlabeled_files`, and perturbed copies of the training texts (`augment.copies`), are tokenised like the training texts and get the label id
IGNORE, so only the soft-target (and hidden-state) terms learn from them: the teacher's cached
logits are their labels (TinyBERT's augmented task distillation).
"""

from __future__ import annotations

import datasets
import torch

from hftk.distill.loss import IGNORE
from hftk.errors import HftkError
from hftk.tasks.classification import tokenize_texts
from hftk.tasks.common import effective_max_length, load_splits, require_columns


def load_unlabeled(files: list[str], text_column: str, text_pair_column: str | None) -> datasets.Dataset:
    """The texts of every unlabelled file, one split."""
    parts = []
    for index, path in enumerate(files):
        raw = load_splits(data_files={"unlabeled": path})["unlabeled"]
        require_columns(raw, [text_column, text_pair_column], f"unlabeled file {path}")
        parts.append(raw.select_columns([c for c in (text_column, text_pair_column) if c]))
    if not parts:
        raise HftkError("data.unlabeled_files is empty")
    return datasets.concatenate_datasets(parts)


def featurize_unlabeled(
    raw: datasets.Dataset, tokenizer, like: datasets.Dataset, *, text_column: str, text_pair_column: str | None, max_seq_length: int
) -> datasets.Dataset:
    """Tokenise like the training set and add IGNORE labels; same columns and types as `like`."""
    rows = tokenize_texts(
        raw, tokenizer, text_column=text_column, text_pair_column=text_pair_column,
        max_seq_length=effective_max_length(tokenizer, max_seq_length), split="unlabeled",
    )
    rows = rows.add_column("labels", [IGNORE] * len(rows))
    return rows.select_columns(like.column_names).cast(like.features)


# --- TinyBERT's word-replacement augmentation --------------------------------------------------
#
# Perturbed copies of the training texts: each whole word (one token of the proposing masked LM,
# letters only) is replaced with probability p by a word drawn uniformly from the LM's top-k
# predictions for its position (the original word excluded). Unlike TinyBERT, which masks one
# word at a time (a forward pass per word), the words chosen for one copy are masked together
# and predicted in one pass: a forward pass per copy, so that 20 copies of a few thousand texts
# fit a CPU. Words split into several tokens stay as they are (TinyBERT takes GloVe neighbours
# for those; there is no word-vector model here). The copies carry no hard label: the teacher
# labels them. Hand-written: no library in the stack generates MLM-proposed replacements.

AUGMENT_SEED_STRIDE = 1_000_003


def load_proposer(path: str, teacher_path: str) -> tuple:
    """(masked LM, its tokenizer) that proposes replacement words; one-line errors if it has no trained MLM head."""
    from pathlib import Path

    import transformers

    from hftk.data.tokenizer import load_tokenizer
    from hftk.models.loading import quiet_load_report

    source = path or teacher_path
    key = "augment.mlm" if path else "the teacher"
    if not (Path(source) / "config.json").is_file():
        raise HftkError(f"{key} {source} has no config.json: point augment.mlm at a saved masked-LM folder")
    hint = "set augment.mlm=FOLDER (a masked LM with the same language, e.g. the output of `hftk pretrain`)"
    try:
        with quiet_load_report():  # a model without a trained MLM head is refused below in one line
            model, info = transformers.AutoModelForMaskedLM.from_pretrained(source, output_loading_info=True)
    except (ValueError, OSError):
        raise HftkError(f"{key} {source} is not a masked LM, so it cannot propose replacement words: {hint}") from None
    tied = set(getattr(model, "_tied_weights_keys", None) or {})
    if set(info["missing_keys"]) - tied:
        raise HftkError(f"{key} {source} has no trained masked-LM head, so it cannot propose replacement words: {hint}")
    tokenizer = load_tokenizer(source)
    if tokenizer.mask_token_id is None:
        raise HftkError(f"{key} {source} has a tokenizer without a mask token: {hint}")
    return model.eval(), tokenizer


def word_table(tokenizer) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(Bool[vocab]: token is a whole word of letters, the same for ASCII letters, the word of each token).

    An ASCII word is replaced by ASCII words only (a multilingual vocabulary holds letters of every script).
    """
    from hftk.data.tokenizer import continuation_mask

    continuation = continuation_mask(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    words = [tokenizer.convert_tokens_to_string([token]).strip() if token is not None else "" for token in tokens]
    valid = torch.tensor([w.isalpha() for w in words], dtype=torch.bool) & ~continuation
    valid[[i for i in tokenizer.all_special_ids if i < len(valid)]] = False
    ascii_valid = valid & torch.tensor([w.isascii() for w in words], dtype=torch.bool)
    return valid, ascii_valid, words


@torch.no_grad()
def perturbed_copies(
    texts: list[str],
    model,
    tokenizer,
    *,
    copies: int,
    probability: float,
    top_k: int,
    seed: int,
    max_length: int,
    batch_size: int = 32,
) -> list[tuple[int, str]]:
    """(index of the source text, perturbed text): up to `copies` per text, in order (copies that changed nothing are dropped).

    Reproducible: copy c of text i draws from a generator seeded by (seed, i, c), and the LM runs
    in eval mode.
    """
    from hftk.distill.model import split_head

    valid, ascii_valid, words = word_table(tokenizer)
    split = split_head(model)
    device = next(model.parameters()).device
    jobs = []  # (text index, masked input ids, chosen positions, generator)
    encodings = tokenizer(texts, truncation=True, max_length=max_length, return_offsets_mapping=True)
    for i, text in enumerate(texts):
        ids, offsets, word_ids = encodings["input_ids"][i], encodings["offset_mapping"][i], encodings.word_ids(i)
        counts: dict[int, int] = {}
        for w in word_ids:
            if w is not None:
                counts[w] = counts.get(w, 0) + 1
        eligible = [
            j for j, w in enumerate(word_ids)
            if w is not None and counts[w] == 1 and text[offsets[j][0] : offsets[j][1]].isalpha()
        ]
        for c in range(copies):
            generator = torch.Generator().manual_seed((seed * AUGMENT_SEED_STRIDE + i) * 1024 + c)
            draws = torch.rand(len(eligible), generator=generator)
            chosen = [j for j, u in zip(eligible, draws.tolist()) if u < probability]
            if chosen:
                masked = list(ids)
                for j in chosen:
                    masked[j] = tokenizer.mask_token_id
                jobs.append((i, masked, chosen, generator))
    out: list[list[str]] = [[] for _ in texts]
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start : start + batch_size]
        padded = tokenizer.pad({"input_ids": [job[1] for job in batch]}, return_tensors="pt").to(device)
        if split is None:
            hidden, head = model(**padded).logits, torch.nn.Identity()
        else:
            hidden, head = split[0](**padded).last_hidden_state, split[1]
        for row, (i, masked, chosen, generator) in enumerate(batch):
            logits = head(hidden[row, chosen]).float().cpu()
            text, offsets = texts[i], encodings["offset_mapping"][i]
            ascii_word = torch.tensor([text[offsets[j][0] : offsets[j][1]].isascii() for j in chosen])
            allowed = torch.where(ascii_word[:, None], ascii_valid[None], valid[None])[:, : logits.shape[-1]]
            logits[~allowed] = -torch.inf
            original = torch.tensor([encodings["input_ids"][i][j] for j in chosen])
            logits[torch.arange(len(chosen)), original] = -torch.inf
            candidates = logits.topk(min(top_k, logits.shape[-1]), dim=-1).indices
            picks = torch.randint(0, candidates.shape[-1], (len(chosen),), generator=generator)
            for j, token in sorted(zip(chosen, candidates[torch.arange(len(chosen)), picks].tolist()), reverse=True):
                begin, end = offsets[j]
                word = words[token]
                if text[begin].isupper():
                    word = word[:1].upper() + word[1:]
                text = text[:begin] + word + text[end:]
            if text != texts[i]:
                out[i].append(text)
    return [(i, copy) for i, versions in enumerate(out) for copy in versions]
