"""Prompt -> target causal-LM data on bbc_headlines with the real GPT-2 BPE tokenizer."""

from __future__ import annotations

import datasets
import pytest
import sacrebleu
import torch

from hftk.errors import HftkError
from hftk.tasks.generation import (
    compute_generation_metrics,
    decode_generated,
    prepare_generation,
    prepare_generation_inputs,
    tokenize_prompt_target,
)

CUE = "\nTL;DR:"


@pytest.fixture
def headlines(data_dir, slice_file, read_jsonl):
    src = data_dir / "generation" / "bbc_headlines"
    return (
        slice_file(src / "train.jsonl", 24, "train.jsonl"),
        slice_file(src / "test.jsonl", 8, "test.jsonl"),
        read_jsonl(src / "train.jsonl", 24),
    )


def _split(feature):
    labels = feature["labels"]
    start = next(i for i, label in enumerate(labels) if label != -100)
    return start, labels


def test_labels_cover_exactly_the_target_and_truncation_keeps_it(gpt2_tokenizer, headlines):
    train_file, test_file, rows = headlines
    max_len = 96  # far shorter than the articles, so every prompt is truncated
    task = prepare_generation(gpt2_tokenizer, train_file=train_file, validation_file=test_file, max_seq_length=max_len)
    assert task.kind == "causal_lm" and task.main_metric == "rougeL"
    assert task.train.column_names == ["input_ids", "attention_mask", "labels"]
    eos = gpt2_tokenizer.eos_token
    truncated = 0
    for row, feature in zip(rows, task.train):
        ids = feature["input_ids"]
        start, labels = _split(feature)
        assert len(ids) <= max_len and len(labels) == len(ids) and feature["attention_mask"] == [1] * len(ids)
        # Every position from `start` on is labelled with its own input id: loss on target + EOS only.
        assert labels[start:] == ids[start:] and all(label == -100 for label in labels[:start])
        assert gpt2_tokenizer.decode(labels[start:]) == " " + row["summary"] + eos
        prompt = gpt2_tokenizer.decode(ids[:start])
        assert prompt.endswith(CUE)  # the cue survives truncation, right before the target
        source = prompt[: -len(CUE)]
        if "\ufffd" not in source:  # a cut inside a multi-byte character decodes to U+FFFD
            assert row["document"].startswith(source)  # truncated from the right: the lead is kept
        truncated += len(source) < len(row["document"])
    assert truncated == len(rows)
    assert max(len(ids) for ids in task.train["input_ids"]) == max_len  # the budget is used, not wasted


def test_untruncated_prompt_is_the_template(gpt2_tokenizer, headlines):
    train_file, _, rows = headlines
    task = prepare_generation(
        gpt2_tokenizer, train_file=train_file, max_seq_length=4096, prompt_template="Article: {document}\nHeadline:",
    )
    for row, feature in zip(rows, task.train):
        start, _ = _split(feature)
        assert gpt2_tokenizer.decode(feature["input_ids"][:start]) == f"Article: {row['document']}\nHeadline:"


def test_long_target_is_cut_but_keeps_eos(gpt2_tokenizer):
    batch = {"document": ["a b c d e f"], "summary": [" ".join(["word"] * 50)]}
    out = tokenize_prompt_target(batch, gpt2_tokenizer, max_seq_length=40, max_target_length=10)
    labelled = [t for t in out["labels"][0] if t != -100]
    assert len(labelled) == 10 and labelled[-1] == gpt2_tokenizer.eos_token_id
    assert gpt2_tokenizer.decode(out["input_ids"][0][: len(out["input_ids"][0]) - 10]) == "a b c d e f" + CUE


def test_collator_and_left_padded_generation_inputs(gpt2_tokenizer, headlines):
    train_file, test_file, rows = headlines
    task = prepare_generation(gpt2_tokenizer, train_file=train_file, validation_file=test_file, max_seq_length=128, max_new_tokens=16)
    eos = gpt2_tokenizer.eos_token_id
    features = [task.train[i] for i in range(4)]
    lengths = [len(f["input_ids"]) for f in features]
    batch = task.collator(features)
    assert batch["input_ids"].shape == batch["labels"].shape == (4, max(lengths))
    for i, n in enumerate(lengths):
        assert batch["input_ids"][i, :n].tolist() == features[i]["input_ids"]
        assert (batch["input_ids"][i, n:] == eos).all() and (batch["labels"][i, n:] == -100).all()
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (max(lengths) - n)

    examples = task.eval_examples["validation"]
    prompts = examples["prompt_input_ids"]
    assert all(len(p) <= 128 - 16 for p in prompts)
    assert all(gpt2_tokenizer.decode(p).endswith(CUE) for p in prompts)
    prompts = [prompts[0][-30:], prompts[1][-50:]]  # two lengths
    inputs = prepare_generation_inputs(prompts, eos)
    assert inputs["input_ids"].shape == (2, 50)
    assert inputs["input_ids"][0, 20:].tolist() == prompts[0] and (inputs["input_ids"][0, :20] == eos).all()
    assert inputs["attention_mask"][0].tolist() == [0] * 20 + [1] * 30 and inputs["attention_mask"][1].all()
    # decode_generated keeps only the new tokens and stops at EOS.
    new = gpt2_tokenizer(" Oil prices rise", add_special_tokens=False)["input_ids"]
    generated = torch.cat([inputs["input_ids"], torch.tensor([new + [eos, 11], new + [11, eos]])], dim=1)
    assert decode_generated(gpt2_tokenizer, generated, 50) == ["Oil prices rise", "Oil prices rise,"]


def test_generation_metrics(gpt2_tokenizer, headlines):
    train_file, test_file, _ = headlines
    task = prepare_generation(gpt2_tokenizer, train_file=train_file, validation_file=test_file, max_seq_length=128)
    refs = task.eval_examples["validation"]["summary"]
    perfect = task.compute_metrics("validation", refs)
    assert perfect == pytest.approx({"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0, "rougeLsum": 100.0, "bleu": 100.0, "chrf": 100.0})
    # Hand case: "the cat sat" vs "the cat sat on the mat": ROUGE-1 P=1, R=3/6 -> F=2/3;
    # ROUGE-2 P=2/2, R=2/5 -> F=4/7; ROUGE-L LCS 3 -> as ROUGE-1.
    result = compute_generation_metrics(["the cat sat"], ["the cat sat on the mat"])
    assert result["rouge1"] == pytest.approx(200 / 3) and result["rouge2"] == pytest.approx(400 / 7)
    assert result["rougeL"] == pytest.approx(200 / 3)
    preds = ["Oil prices rise again", "Minister quits over row", "Champions win"]
    refs = ["Oil prices rise sharply again", "Minister quits after row", "Chelsea win the title"]
    expected = sacrebleu.corpus_bleu(preds, [refs]).score
    assert 0 < expected < 100 and compute_generation_metrics(preds, refs)["bleu"] == pytest.approx(expected)
    expected_chrf = sacrebleu.corpus_chrf(preds, [refs]).score  # chrF as the seq2seq tasks score it
    assert 0 < expected_chrf < 100 and compute_generation_metrics(preds, refs)["chrf"] == pytest.approx(expected_chrf)
    with pytest.raises(HftkError, match="2 generated texts for 1 references"):
        compute_generation_metrics(["a", "b"], ["a"])


def test_template_errors(gpt2_tokenizer):
    raw = datasets.DatasetDict(train=datasets.Dataset.from_dict({"document": ["some text"], "summary": ["s"]}))
    with pytest.raises(HftkError, match="has no \\{document\\} field"):
        prepare_generation(gpt2_tokenizer, raw=raw, prompt_template="Summarise: {text}")
    with pytest.raises(HftkError, match="field 'lang' is not a data column"):
        prepare_generation(gpt2_tokenizer, raw=raw, prompt_template="{lang}: {document}")
    with pytest.raises(HftkError, match="leaving no room"):
        prepare_generation(gpt2_tokenizer, raw=raw, prompt_template="{document}" + " long cue" * 20, max_seq_length=16, max_new_tokens=4)
    with pytest.raises(HftkError, match="no column.*'summary'"):
        prepare_generation(gpt2_tokenizer, raw=raw, target_column="headline", prompt_template="{summary} {document}")


def test_batches_train_and_generate_with_a_tiny_gpt2(gpt2_tokenizer, headlines):
    from transformers import GPT2Config, GPT2LMHeadModel

    train_file, test_file, _ = headlines
    task = prepare_generation(gpt2_tokenizer, train_file=train_file, validation_file=test_file, max_seq_length=64, max_new_tokens=8)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=64)).eval()
    batch = task.collator([task.train[i] for i in range(3)])
    with torch.no_grad():
        out = model(**batch)
    # The model's loss is the mean next-token CE over labelled (target + EOS) positions only.
    logits, labels = out.logits[:, :-1], batch["labels"][:, 1:]
    mask = labels != -100
    manual = torch.nn.functional.cross_entropy(logits[mask], labels[mask])
    assert out.loss.item() == pytest.approx(manual.item(), rel=1e-5)
    assert mask.sum().item() == sum(sum(1 for t in task.train[i]["labels"] if t != -100) for i in range(3))

    eos = gpt2_tokenizer.eos_token_id
    inputs = prepare_generation_inputs(task.eval_examples["validation"]["prompt_input_ids"][:3], eos)
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=8, do_sample=False, pad_token_id=eos)
        # Left padding is what makes batched greedy decoding match one-by-one decoding.
        single = model.generate(**prepare_generation_inputs(inputs["input_ids"][:1, inputs["attention_mask"][0].bool()].tolist(), eos),
                                max_new_tokens=8, do_sample=False, pad_token_id=eos)
    texts = decode_generated(gpt2_tokenizer, generated, inputs["input_ids"].shape[1])
    assert texts[0] == decode_generated(gpt2_tokenizer, single, single.shape[1] - 8)[0]
    assert set(task.compute_metrics("validation", texts + [""] * 5)) == {"rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "chrf"}


def test_label_smoothing_of_a_decoder_only_model_shifts_labels_as_its_own_loss(gpt2_tokenizer, headlines):
    """`finetune generation` smooths the loss on the target tokens as the seq2seq tasks do."""
    import torch.nn.functional as F

    import hftk  # noqa: F401
    from hftk.models import HftkGptConfig, HftkGptForCausalLM
    from hftk.tasks.generation import DataCollatorForPromptCompletion
    from hftk.tasks.seq2seq import label_smoothed_loss

    train_file, test_file, _ = headlines
    task = prepare_generation(gpt2_tokenizer, train_file=train_file, validation_file=test_file, max_seq_length=64)
    batch = DataCollatorForPromptCompletion(gpt2_tokenizer.eos_token_id)([task.train[i] for i in range(4)])
    torch.manual_seed(0)
    config = HftkGptConfig(vocab_size=len(gpt2_tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = HftkGptForCausalLM(config).eval()
    with torch.no_grad():
        # Without smoothing: the model's own causal-LM loss (transformers' shift of the labels).
        assert label_smoothed_loss(0.0, causal=True)(model, batch) == pytest.approx(float(model(**batch).loss), rel=1e-5)
        # With smoothing: (1 - eps) * NLL + eps * the mean over the vocabulary of -log p, per target token, by hand.
        log_probs = F.log_softmax(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float(), -1)
        expected, count = 0.0, 0
        for row in range(4):
            for position in range(1, batch["labels"].shape[1]):
                label = int(batch["labels"][row, position])
                if label != -100:
                    scores = log_probs[row, position - 1]
                    expected += 0.9 * -float(scores[label]) + 0.1 * -float(scores.mean())
                    count += 1
        assert label_smoothed_loss(0.1, causal=True)(model, batch) == pytest.approx(expected / count, rel=1e-5)
