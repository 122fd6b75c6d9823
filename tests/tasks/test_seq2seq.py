"""Translation / summarization data, loss and generation for any AutoModelForSeq2SeqLM (hftk_seq2seq, BART, Marian)."""

from __future__ import annotations

import datasets
import pytest
import sacrebleu
import torch
import torch.nn.functional as F

from hftk.errors import HftkError
from hftk.recipe import GenerationSection
from hftk.tasks.seq2seq import (
    generate_texts,
    label_smoothed_loss,
    prepare_summarization,
    prepare_translation,
    require_seq2seq_model,
    translation_metrics,
    translation_signatures,
)
from tests.tasks.tiny_seq2seq import bible_rows, save_tiny_bart, save_tiny_hftk, save_tiny_marian, seq2seq_tokenizer


@pytest.fixture(scope="module")
def rows(data_dir):
    return bible_rows("train", 40, shared=data_dir.parent)


@pytest.fixture(scope="module")
def tokenizer(rows):
    return seq2seq_tokenizer([r["translation"][k] for r in rows for k in ("en", "es")])


@pytest.fixture(scope="module")
def models(tmp_path_factory, tokenizer):
    from transformers import AutoModelForSeq2SeqLM

    root = tmp_path_factory.mktemp("seq2seq")
    folders = {
        "hftk_seq2seq": save_tiny_hftk(root / "hftk", tokenizer),
        "bart": save_tiny_bart(root / "bart", tokenizer),
        "marian": save_tiny_marian(root / "marian", tokenizer),
    }
    return {name: AutoModelForSeq2SeqLM.from_pretrained(folder).eval() for name, folder in folders.items()}


def raw(rows_by_split: dict[str, list[dict]]) -> datasets.DatasetDict:
    return datasets.DatasetDict({split: datasets.Dataset.from_list(r) for split, r in rows_by_split.items()})


def test_translation_features_go_source_to_target_and_labels_end_in_eos(tokenizer, rows):
    task = prepare_translation(
        tokenizer, source_lang="es", target_lang="en", raw=raw({"train": rows[:8], "validation": rows[8:12]}),
        source_prefix="translate: ", max_seq_length=64, max_target_length=12,
    )
    assert task.kind == "seq2seq_lm" and task.auto_model_class == "AutoModelForSeq2SeqLM" and task.main_metric == "bleu"
    first = task.train[0]
    assert tokenizer.decode(first["input_ids"], skip_special_tokens=True) == "translate: " + rows[0]["translation"]["es"]
    assert first["input_ids"][-1] == tokenizer.eos_token_id
    for feature in task.train:
        assert len(feature["labels"]) <= 12 and feature["labels"][-1] == tokenizer.eos_token_id
    full = tokenizer(text_target=rows[1]["translation"]["en"])["input_ids"]
    assert task.train[1]["labels"] == full[:11] + [tokenizer.eos_token_id]  # cut to 12, EOS kept
    assert task.eval_examples["validation"]["target"] == [r["translation"]["en"] for r in rows[8:12]]
    assert task.eval_examples["validation"]["source_input_ids"] == task.eval["validation"]["input_ids"]


def test_collator_pads_labels_with_ignore_and_makes_decoder_inputs(tokenizer, rows, models):
    task = prepare_translation(tokenizer, source_lang="en", target_lang="es", raw=raw({"train": rows[:4]}), max_seq_length=64)
    model = models["marian"]
    task.collator.model = model
    batch = task.collator([task.train[i] for i in range(4)])
    lengths = [len(task.train[i]["labels"]) for i in range(4)]
    for row, length in zip(batch["labels"].tolist(), lengths):
        assert row[length:] == [-100] * (batch["labels"].shape[1] - length)
    # Marian starts from pad: decoder inputs are the labels shifted right behind it, -100 read as pad.
    assert batch["decoder_input_ids"][:, 0].tolist() == [tokenizer.pad_token_id] * 4
    expected = batch["labels"][:, :-1].masked_fill(batch["labels"][:, :-1] == -100, tokenizer.pad_token_id)
    assert torch.equal(batch["decoder_input_ids"][:, 1:], expected)


@pytest.mark.parametrize("name", ["hftk_seq2seq", "bart", "marian"])
def test_label_smoothed_loss_matches_a_hand_computation(tokenizer, rows, models, name):
    """epsilon = 0 is the model's own loss; epsilon > 0 is (1-e)·NLL + e·mean over classes of -log p."""
    model = models[name]
    task = prepare_translation(tokenizer, source_lang="es", target_lang="en", raw=raw({"train": rows[:6]}), max_seq_length=64)
    task.collator.model = model
    batch = task.collator([task.train[i] for i in range(6)])
    with torch.no_grad():
        assert label_smoothed_loss(0.0)(model, batch).item() == pytest.approx(model(**batch).loss.item(), rel=1e-5)
        logp = F.log_softmax(model(**batch).logits.float(), dim=-1)
        keep = batch["labels"] != -100
        nll = -logp.gather(-1, batch["labels"].clamp(min=0).unsqueeze(-1)).squeeze(-1)[keep]
        uniform = -logp.mean(-1)[keep]
        expected = (0.9 * nll + 0.1 * uniform).mean()
        assert label_smoothed_loss(0.1)(model, batch).item() == pytest.approx(expected.item(), rel=1e-5)
        # Summed over a global target count: the gradient-accumulation form the loop uses.
        summed = label_smoothed_loss(0.1)(model, batch, num_items_in_batch=torch.tensor(2 * int(keep.sum())))
        assert summed.item() == pytest.approx(expected.item() / 2, rel=1e-5)


@pytest.mark.parametrize("name", ["hftk_seq2seq", "bart", "marian"])
def test_batched_generation_equals_one_at_a_time(tokenizer, rows, models, name):
    """Right-padding a batch of sources must not change any output (greedy and beam search)."""
    model = models[name]
    task = prepare_translation(tokenizer, source_lang="es", target_lang="en", raw=raw({"validation": rows[:4]}), max_seq_length=64)
    sources = task.eval_examples["validation"]["source_input_ids"]
    assert len({len(s) for s in sources}) > 1  # really padded
    for settings in (GenerationSection(max_new_tokens=6), GenerationSection(max_new_tokens=6, num_beams=3, length_penalty=0.6)):
        batched = generate_texts(model, tokenizer, sources, settings, batch_size=4)
        alone = [generate_texts(model, tokenizer, [s], settings, batch_size=1)[0] for s in sources]
        assert batched == alone and len(batched) == 4


def test_translation_metrics_are_sacrebleu_with_signatures():
    predictions = ["The man went to Moab with his wife.", "Naomi was bitter."]
    references = ["A certain man went to live in Moab with his wife.", "Call me Mara, for the Almighty has dealt bitterly."]
    scores = translation_metrics(predictions, references)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(predictions, [references]).score)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(predictions, [references]).score)
    assert 0 < scores["bleu"] < 100
    signatures = translation_signatures(predictions, references)
    assert signatures["sacrebleu_bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")
    assert signatures["sacrebleu_chrf_signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no")


def test_summarization_reads_named_columns(tokenizer):
    rows = [{"article": f"text number {i} about a match", "headline": f"match {i}"} for i in range(6)]
    task = prepare_summarization(
        tokenizer, source_column="article", target_column="headline", raw=raw({"train": rows, "validation": rows[:2]}), max_seq_length=32,
    )
    assert task.main_metric == "rougeL"
    assert tokenizer.decode(task.train[0]["labels"], skip_special_tokens=True) == "match 0"
    perfect = task.compute_metrics("validation", ["match 0", "match 1"])
    assert perfect["rougeL"] == pytest.approx(100.0) and perfect["rouge1"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("kwargs", "rows_by_split", "needles"),
    [
        ({"source_lang": "es", "target_lang": "fr"}, "bible", ["'fr'", "['en', 'es']", "data.target_lang"]),
        ({"source_lang": "es", "target_lang": "es"}, "bible", ["both 'es'", "two different languages"]),
        ({"source_lang": None, "target_lang": "en"}, "bible", ["data.source_lang", "data.target_lang"]),
        ({"source_lang": "es", "target_lang": "en"}, "one_side_missing", ["row 2", "'en'"]),
        ({"source_lang": "es", "target_lang": "en"}, "flat", ["'translation'", "['es', 'en']"]),
    ],
)
def test_translation_data_errors(tokenizer, rows, kwargs, rows_by_split, needles):
    data = {
        "bible": {"train": rows[:3]},
        "one_side_missing": {"train": [rows[0], {"translation": {"es": "Hola"}}]},
        "flat": {"train": [{"es": "Hola", "en": "Hello"}]},
    }[rows_by_split]
    with pytest.raises(HftkError) as error:
        prepare_translation(tokenizer, raw=raw(data), **kwargs)
    message = str(error.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_summarization_without_the_named_columns(tokenizer):
    with pytest.raises(HftkError, match="no column.*'story'.*'headline'"):
        prepare_summarization(tokenizer, source_column="story", raw=raw({"train": [{"document": "a", "headline": "b"}]}), target_column="headline")


def test_only_encoder_decoders_fit(models):
    from transformers import BertConfig, GPT2Config

    import hftk  # noqa: F401
    from hftk.models import HftkBertConfig, HftkGptConfig

    for model in models.values():
        require_seq2seq_model(model.config, "translation", "m")
    for config, kind in ((HftkGptConfig(), "decoder-only"), (GPT2Config(), "decoder-only"), (HftkBertConfig(), "encoder-only"), (BertConfig(), "encoder-only")):
        with pytest.raises(HftkError) as error:
            require_seq2seq_model(config, "translation", "runs/x")
        assert kind in str(error.value) and "hftk_seq2seq" in str(error.value) and "bart" in str(error.value)
