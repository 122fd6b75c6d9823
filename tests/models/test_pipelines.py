"""Every head through its Auto class and through `transformers.pipeline` with a real tokenizer.

transformers 5.23 has no "question-answering" pipeline any more, so extractive QA is checked
through AutoModelForQuestionAnswering and the tokenizer's offsets instead.
"""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    pipeline,
)

from hftk.models import (
    HftkBertForMaskedLM,
    HftkBertForQuestionAnswering,
    HftkBertForSequenceClassification,
    HftkBertForTokenClassification,
    HftkGptForCausalLM,
)

from .tiny import build, tiny_bert_config, tiny_gpt_config

TEXT = "The quick brown fox jumps over the lazy dog near the river bank."


def saved(model_class, config, tokenizer, folder, seed: int = 0):
    model = build(model_class, config, seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def bert_config(**overrides):
    # A wide init makes logits far from uniform, so the top predictions are unambiguous.
    return tiny_bert_config(vocab_size=30522, max_position_embeddings=128, initializer_range=0.2, **overrides)


def test_fill_mask_pipeline_top_token_is_the_argmax_of_the_logits(bert_tokenizer, tmp_path):
    model = saved(HftkBertForMaskedLM, bert_config(), bert_tokenizer, tmp_path)
    fill = pipeline("fill-mask", model=str(tmp_path), top_k=3)
    assert type(fill.model) is HftkBertForMaskedLM
    text = f"The quick brown {bert_tokenizer.mask_token} jumps over the lazy dog."
    predictions = fill(text)
    assert [sorted(p) for p in predictions] == [["score", "sequence", "token", "token_str"]] * 3
    encoded = bert_tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = model(**encoded).logits[0]
    where = int((encoded["input_ids"][0] == bert_tokenizer.mask_token_id).nonzero())
    probabilities = logits[where].softmax(-1)
    top = probabilities.topk(3)
    assert [p["token"] for p in predictions] == top.indices.tolist()
    assert [p["score"] for p in predictions] == pytest.approx(top.values.tolist(), abs=1e-5)
    assert predictions[0]["token_str"] == bert_tokenizer.decode([top.indices[0]]).strip()


def test_text_classification_pipeline_scores_are_the_softmax_of_the_logits(bert_tokenizer, tmp_path):
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    config = bert_config(num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()})
    model = saved(HftkBertForSequenceClassification, config, bert_tokenizer, tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    classify = pipeline("text-classification", model=loaded, tokenizer=AutoTokenizer.from_pretrained(tmp_path), top_k=None)
    scores = {row["label"]: row["score"] for row in classify([TEXT])[0]}
    with torch.no_grad():
        probabilities = model(**bert_tokenizer(TEXT, return_tensors="pt")).logits[0].softmax(-1)
    assert scores == pytest.approx({labels[i]: probabilities[i].item() for i in range(3)}, abs=1e-5)


def test_token_classification_pipeline_tags_are_the_argmax_per_token(bert_tokenizer, tmp_path):
    labels = {0: "O", 1: "B-LOC", 2: "I-LOC", 3: "B-PER", 4: "I-PER"}
    config = bert_config(num_labels=5, id2label=labels, label2id={v: k for k, v in labels.items()})
    model = saved(HftkBertForTokenClassification, config, bert_tokenizer, tmp_path, seed=1)
    assert type(AutoModelForTokenClassification.from_pretrained(tmp_path)) is HftkBertForTokenClassification
    tag = pipeline("token-classification", model=str(tmp_path))
    entities = tag(TEXT)
    encoded = bert_tokenizer(TEXT, return_tensors="pt")
    with torch.no_grad():
        probabilities = model(**encoded).logits[0].softmax(-1)
    best = probabilities.argmax(-1)
    expected = [i for i in range(1, len(best) - 1) if best[i] != 0]  # [CLS]/[SEP] are special, "O" is dropped
    assert expected, "the random tagger predicts only O: pick another seed"
    assert [e["index"] for e in entities] == expected
    for entity in entities:
        i = entity["index"]
        assert entity["entity"] == labels[int(best[i])]
        assert entity["score"] == pytest.approx(probabilities[i].max().item(), abs=1e-5)
        assert entity["word"] == bert_tokenizer.convert_ids_to_tokens(int(encoded["input_ids"][0, i]))
        assert TEXT[entity["start"] : entity["end"]].lower() == entity["word"].removeprefix("##")


def test_question_answering_through_the_auto_class_and_offsets(bert_tokenizer, tmp_path):
    model = saved(HftkBertForQuestionAnswering, bert_config(), bert_tokenizer, tmp_path)
    loaded = AutoModelForQuestionAnswering.from_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is HftkBertForQuestionAnswering
    question = "What does the fox jump over?"
    encoded = tokenizer(question, TEXT, return_tensors="pt", return_offsets_mapping=True)
    offsets = encoded.pop("offset_mapping")[0]
    with torch.no_grad():
        out = loaded(**encoded)
        reference = model(**encoded)
    assert torch.equal(out.start_logits, reference.start_logits) and torch.equal(out.end_logits, reference.end_logits)
    length = encoded["input_ids"].shape[1]
    assert out.start_logits.shape == out.end_logits.shape == (1, length)
    # The best span inside the context decodes to the text between its character offsets.
    context = torch.tensor([s == 1 for s in encoded.sequence_ids(0)])
    scores = out.start_logits[0][:, None] + out.end_logits[0][None, :]
    allowed = context[:, None] & context[None, :] & torch.ones(length, length, dtype=torch.bool).triu()
    start, end = divmod(int(scores.masked_fill(~allowed, -torch.inf).argmax()), length)
    answer = TEXT[int(offsets[start, 0]) : int(offsets[end, 1])]
    assert start <= end and answer and answer in TEXT
    assert answer.lower() == tokenizer.decode(encoded["input_ids"][0, start : end + 1]).replace(" ##", "")


def test_text_generation_pipeline_continues_greedily(gpt2_tokenizer, tmp_path):
    config = tiny_gpt_config(vocab_size=50257, bos_token_id=50256, eos_token_id=50256, initializer_range=0.2)
    model = saved(HftkGptForCausalLM, config, gpt2_tokenizer, tmp_path)
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path)) is HftkGptForCausalLM
    generate = pipeline("text-generation", model=str(tmp_path))
    prompt = "Hello, my name is"
    result = generate(prompt, max_new_tokens=8, do_sample=False)
    assert [sorted(r) for r in result] == [["generated_text"]]
    ids = gpt2_tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        for _ in range(8):
            ids = torch.cat([ids, model(ids, use_cache=False).logits[:, -1:].argmax(-1)], dim=-1)
    assert result[0]["generated_text"] == gpt2_tokenizer.decode(ids[0])
    assert result[0]["generated_text"].startswith(prompt) and len(result[0]["generated_text"]) > len(prompt)
