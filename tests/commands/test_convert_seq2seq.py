"""BART and Marian checkpoints become hftk_seq2seq models that compute the same numbers; T5 is refused."""

from __future__ import annotations

import os

import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForSeq2SeqLM,
    BartConfig,
    BartForConditionalGeneration,
    BartModel,
    MarianConfig,
    MarianMTModel,
    T5Config,
    T5ForConditionalGeneration,
)

import hftk  # noqa: F401  (registers the Auto classes)
from hftk.commands.convert import convert_checkpoint, convert_model
from hftk.errors import HftkError
from hftk.models import HftkSeq2SeqForConditionalGeneration, HftkSeq2SeqModel

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TOLERANCE = dict(atol=1e-4, rtol=1e-4)
SHAPE = dict(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=64,
             dropout=0.0, attention_dropout=0.0, init_std=0.2)
BART = BartConfig(**SHAPE, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
MARIAN = MarianConfig(**SHAPE, pad_token_id=1, eos_token_id=2, decoder_start_token_id=1)


def random_source(model_class, config, seed: int = 0):
    torch.manual_seed(seed)
    model = model_class(config).eval()
    if hasattr(model, "final_logits_bias"):
        with torch.no_grad():
            model.final_logits_bias.normal_()  # zeros at init: make the converter prove it carries it
    return model


def batch():
    generator = torch.Generator().manual_seed(1)
    source = torch.randint(3, 99, (3, 11), generator=generator)
    mask = torch.ones_like(source)
    mask[0, 7:] = 0
    mask[2, 9:] = 0
    target = torch.randint(3, 99, (3, 6), generator=generator)
    return dict(input_ids=source, attention_mask=mask, decoder_input_ids=target)


@pytest.mark.parametrize(
    "source_class, config",
    [(BartForConditionalGeneration, BART), (BartModel, BART), (MarianMTModel, MARIAN)],
    ids=["bart-lm", "bart-model", "marian-mt"],
)
def test_random_models_convert_to_the_same_outputs(source_class, config):
    source = random_source(source_class, config)
    converted = convert_model(source)
    expected_class = HftkSeq2SeqModel if source_class is BartModel else HftkSeq2SeqForConditionalGeneration
    assert type(converted) is expected_class
    inputs = batch()
    with torch.no_grad():
        theirs, ours = source(**inputs), converted(**inputs)
    real = inputs["attention_mask"].bool()
    torch.testing.assert_close(ours.encoder_last_hidden_state[real], theirs.encoder_last_hidden_state[real], **TOLERANCE)
    if source_class is BartModel:
        torch.testing.assert_close(ours.last_hidden_state, theirs.last_hidden_state, **TOLERANCE)
    else:
        torch.testing.assert_close(ours.logits, theirs.logits, **TOLERANCE)


@pytest.mark.parametrize("source_class, config", [(BartForConditionalGeneration, BART), (MarianMTModel, MARIAN)])
def test_converted_models_generate_the_same_beams(source_class, config):
    source = random_source(source_class, config)
    converted = convert_model(source)
    inputs = batch()
    settings = dict(attention_mask=inputs["attention_mask"], max_new_tokens=10, num_beams=4, do_sample=False)
    assert torch.equal(converted.generate(inputs["input_ids"], **settings), source.generate(inputs["input_ids"], **settings))


def test_convert_checkpoint_writes_a_folder_that_loads_with_the_auto_classes(tmp_path):
    source = random_source(MarianMTModel, MARIAN)
    source.save_pretrained(tmp_path / "marian")
    out = convert_checkpoint(tmp_path / "marian", tmp_path / "converted")
    loaded = AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    assert type(loaded) is HftkSeq2SeqForConditionalGeneration
    assert type(AutoModel.from_pretrained(out)) is HftkSeq2SeqModel
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch()).logits, source(**batch()).logits, **TOLERANCE)


def test_t5_and_uneven_layouts_are_refused_with_one_line_errors(tmp_path):
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=99, d_model=32, d_kv=8, d_ff=48, num_layers=1, num_heads=4))
    with pytest.raises(HftkError, match="relative position bias") as error:
        convert_model(t5)
    assert "\n" not in str(error.value)
    t5.save_pretrained(tmp_path / "t5")
    with pytest.raises(HftkError, match="cannot convert T5"):
        convert_checkpoint(tmp_path / "t5", tmp_path / "out")
    uneven = BartForConditionalGeneration(BartConfig(**{**SHAPE, "decoder_layers": 1}))
    with pytest.raises(HftkError, match="2 encoder and 1 decoder layers"):
        convert_model(uneven)
    assert not (tmp_path / "out").exists()

