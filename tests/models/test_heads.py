"""Losses of every head against hand computations with torch.nn.functional."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hftk.models import (
    HftkBertForMaskedLM,
    HftkBertForQuestionAnswering,
    HftkBertForSequenceClassification,
    HftkBertForTokenClassification,
    HftkGptForCausalLM,
    HftkGptForSequenceClassification,
)

from hftk.models.loss_hftk import linear_cross_entropy

from .tiny import build, tiny_bert_config, tiny_gpt_config


def mlm_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 97, (4, 12), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[3, 5:] = 0
    labels = torch.full_like(ids, -100)
    chosen = (torch.rand(ids.shape, generator=generator) < 0.3) & mask.bool()
    chosen[0, 0] = chosen[3, 1] = True
    labels[chosen] = ids[chosen]
    return ids.masked_fill(chosen, 4), mask, labels


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


MLM_MODES = {
    "fused": dict(fused_lm_loss=True),  # the training default: loss straight from the hidden states
    "sparse": dict(fused_lm_loss=False, sparse_prediction=True),
    "dense": dict(fused_lm_loss=False, sparse_prediction=False),
}


@pytest.mark.parametrize("pre_norm", [True, False])
def test_fused_sparse_and_dense_mlm_losses_and_gradients_agree(pre_norm):
    ids, mask, labels = mlm_batch()
    losses, gradients = {}, {}
    for mode, settings in MLM_MODES.items():
        model = build(HftkBertForMaskedLM, tiny_bert_config(pre_norm=pre_norm, **settings)).train()
        out = model(ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        losses[mode], gradients[mode] = out.loss.detach(), grads(model)
        if mode == "fused":
            assert out.logits is None
        elif mode == "sparse":
            assert out.logits.shape == (int((labels != -100).sum()), 97)
        else:
            assert out.logits.shape == (4, 12, 97)
            hand = F.cross_entropy(out.logits.reshape(-1, 97), labels.reshape(-1), ignore_index=-100)
            torch.testing.assert_close(out.loss, hand)
    for mode in ("fused", "sparse"):
        torch.testing.assert_close(losses[mode], losses["dense"], atol=1e-6, rtol=1e-6)
        assert gradients[mode].keys() == gradients["dense"].keys() and len(gradients[mode]) > 10
        for name in gradients[mode]:
            torch.testing.assert_close(gradients[mode][name], gradients["dense"][name], atol=1e-6, rtol=1e-5, msg=name)


def test_masked_lm_without_labels_returns_dense_logits_even_when_sparse():
    ids, mask, _ = mlm_batch()
    model = build(HftkBertForMaskedLM, tiny_bert_config(sparse_prediction=True))
    with torch.no_grad():
        logits = model(ids, attention_mask=mask).logits
        hidden = model.model(ids, attention_mask=mask).last_hidden_state
        head = model.head
        hand = F.layer_norm(F.gelu(head.transform(hidden)), (32,), head.norm.weight, head.norm.bias, head.norm.eps)
        hand = hand @ model.model.encoder.embeddings.word_embeddings.weight.T + head.decoder.bias
    torch.testing.assert_close(logits, hand, atol=1e-5, rtol=1e-5)


def micro_batch_equivalence(model, batch: dict[str, torch.Tensor], items_in_batch: int) -> None:
    """Summed micro-batch losses with num_items_in_batch equal the full-batch mean loss, gradients too."""
    full = model(**batch)
    full.loss.backward()
    full_grads = grads(model)
    model.zero_grad()
    total = 0.0
    for part in (slice(0, 1), slice(1, 4)):
        loss = model(**{k: v[part] for k, v in batch.items()}, num_items_in_batch=torch.tensor(items_in_batch)).loss
        loss.backward()
        total = total + loss.detach()
    torch.testing.assert_close(total, full.loss.detach(), atol=1e-6, rtol=1e-6)
    # Without num_items_in_batch the two unequal micro-batches average differently: the bug it fixes.
    naive = sum(model(**{k: v[p] for k, v in batch.items()}).loss.detach() for p in (slice(0, 1), slice(1, 4))) / 2
    assert abs(naive - full.loss.detach()) > 1e-4
    for name, grad in grads(model).items():
        torch.testing.assert_close(grad, full_grads[name], atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("mode", MLM_MODES)
def test_masked_lm_num_items_in_batch_makes_gradient_accumulation_exact(mode):
    ids, mask, labels = mlm_batch()
    model = build(HftkBertForMaskedLM, tiny_bert_config(**MLM_MODES[mode])).train()
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    micro_batch_equivalence(model, batch, int((labels != -100).sum()))


@pytest.mark.parametrize("fused", [True, False])
def test_causal_lm_loss_is_shifted_cross_entropy_and_accumulates_exactly(fused):
    ids, mask, _ = mlm_batch(1)
    labels = ids.masked_fill(mask == 0, -100)
    model = build(HftkGptForCausalLM, tiny_gpt_config(fused_lm_loss=fused)).train()
    loss = model(ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    trained = grads(model)
    reference = build(HftkGptForCausalLM, tiny_gpt_config(fused_lm_loss=fused)).train()
    logits = reference(ids, attention_mask=mask).logits  # no labels: plain logits in any mode
    hand = F.cross_entropy(logits[:, :-1].reshape(-1, 97), labels[:, 1:].reshape(-1), ignore_index=-100)
    hand.backward()
    torch.testing.assert_close(loss, hand, atol=1e-6, rtol=1e-6)
    for name, grad in grads(reference).items():
        torch.testing.assert_close(trained[name], grad, atol=1e-6, rtol=1e-5, msg=name)
    model.zero_grad()
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    micro_batch_equivalence(model, batch, int((labels[:, 1:] != -100).sum()))


def test_fused_lm_loss_under_bf16_autocast_matches_the_logits_path():
    ids, mask, _ = mlm_batch(2)
    results = {}
    for fused in (True, False):
        model = build(HftkGptForCausalLM, tiny_gpt_config(fused_lm_loss=fused, vocab_size=97)).train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        loss.backward()
        results[fused] = (loss.detach(), grads(model))
    assert results[True][0].dtype == results[False][0].dtype == torch.float32
    torch.testing.assert_close(results[True][0], results[False][0], atol=1e-3, rtol=1e-3)
    for name, grad in results[False][1].items():
        torch.testing.assert_close(results[True][1][name], grad, atol=2e-3, rtol=2e-2, msg=name)


SEQUENCE_HEADS = {"bert": (HftkBertForSequenceClassification, tiny_bert_config), "gpt": (HftkGptForSequenceClassification, tiny_gpt_config)}


@pytest.mark.parametrize("family", SEQUENCE_HEADS)
def test_sequence_classification_losses_by_problem_type(family):
    model_class, make_config = SEQUENCE_HEADS[family]
    ids = torch.randint(3, 97, (4, 7))
    cases = {
        "regression": (1, torch.tensor([0.5, -1.0, 2.0, 0.0]), lambda logits, y: F.mse_loss(logits[:, 0], y)),
        "single_label_classification": (3, torch.tensor([0, 2, 1, 2]), F.cross_entropy),
        "multi_label_classification": (
            3,
            torch.tensor([[1.0, 0, 1], [0, 0, 0], [0, 1, 1], [1, 1, 1]]),
            F.binary_cross_entropy_with_logits,
        ),
    }
    for problem_type, (num_labels, labels, reference) in cases.items():
        model = build(model_class, make_config(num_labels=num_labels, initializer_range=0.5))
        assert model.config.problem_type is None
        out = model(ids, labels=labels)
        assert model.config.problem_type == problem_type  # inferred from num_labels and the label dtype
        assert out.logits.shape == (4, num_labels)
        torch.testing.assert_close(out.loss, reference(out.logits, labels))
        # Stated explicitly it gives the same.
        explicit = build(model_class, make_config(num_labels=num_labels, problem_type=problem_type, initializer_range=0.5))
        torch.testing.assert_close(explicit(ids, labels=labels).loss, out.loss)


def test_bert_sequence_classifier_reads_the_pooled_first_token():
    model = build(HftkBertForSequenceClassification, tiny_bert_config(num_labels=3))
    ids = torch.randint(3, 97, (2, 6))
    with torch.no_grad():
        first = model.model.encoder(ids).last_hidden_state[:, 0]
        hand = model.classifier(torch.tanh(model.model.pooler(first)))
        torch.testing.assert_close(model(ids).logits, hand)


def test_bert_sequence_classifier_mean_pooling_averages_the_real_tokens_only():
    model = build(HftkBertForSequenceClassification, tiny_bert_config(num_labels=3, classifier_pooling="mean"))
    example = torch.randint(3, 97, (1, 5))
    padded = torch.cat([example, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    with torch.no_grad():
        mean = model.model.encoder(example).last_hidden_state.mean(dim=1)
        hand = model.classifier(torch.tanh(model.model.pooler(mean)))
        torch.testing.assert_close(model(example).logits, hand)
        masked = model(padded, attention_mask=torch.tensor([[1] * 5 + [0] * 3])).logits
    torch.testing.assert_close(masked, hand, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="classifier_pooling"):
        tiny_bert_config(classifier_pooling="max")


def test_gpt_sequence_classifier_reads_the_last_real_token_left_or_right_padded():
    model = build(HftkGptForSequenceClassification, tiny_gpt_config(num_labels=2, pad_token_id=0))
    example = torch.tensor([[9, 8, 7, 6]])
    with torch.no_grad():
        alone = model(example).logits
        right = model(torch.tensor([[9, 8, 7, 6, 0, 0]]), attention_mask=torch.tensor([[1, 1, 1, 1, 0, 0]])).logits
        by_pad_id = model(torch.tensor([[9, 8, 7, 6, 0, 0]])).logits
        hidden = model.model(example).last_hidden_state
    torch.testing.assert_close(alone, model.score(hidden[:, -1]))
    torch.testing.assert_close(right, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(by_pad_id, alone, atol=1e-5, rtol=1e-5)


def test_token_classification_and_question_answering_losses():
    ids = torch.randint(3, 97, (3, 8))
    tagger = build(HftkBertForTokenClassification, tiny_bert_config(num_labels=5))
    tags = torch.randint(0, 5, (3, 8))
    tags[:, 0] = -100
    out = tagger(ids, labels=tags)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits.reshape(-1, 5), tags.reshape(-1), ignore_index=-100))

    reader = build(HftkBertForQuestionAnswering, tiny_bert_config())
    start, end = torch.tensor([1, 3, 0]), torch.tensor([2, 5, 0])
    out = reader(ids, start_positions=start, end_positions=end)
    hand = (F.cross_entropy(out.start_logits, start) + F.cross_entropy(out.end_logits, end)) / 2
    assert out.start_logits.shape == out.end_logits.shape == (3, 8)
    torch.testing.assert_close(out.loss, hand)


@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_cross_entropy_equals_cross_entropy_of_linear(with_bias):
    torch.manual_seed(0)
    hidden = torch.randn(2, 9, 8, dtype=torch.float64)
    weight = torch.randn(13, 8, dtype=torch.float64)
    bias = torch.randn(13, dtype=torch.float64) if with_bias else None
    labels = torch.randint(0, 13, (2, 9))
    labels[0, :3] = -100
    for num_items in (None, torch.tensor(40)):
        inputs = [t.clone().requires_grad_() for t in (hidden, weight) + ((bias,) if with_bias else ())]
        ours = linear_cross_entropy(inputs[0], inputs[1], inputs[2] if with_bias else None, labels, num_items, chunk_rows=4)
        (ours * 2.5).backward()  # the upstream gradient is applied in backward
        reference_inputs = [t.detach().clone().requires_grad_() for t in inputs]
        logits = F.linear(reference_inputs[0], reference_inputs[1], reference_inputs[2] if with_bias else None)
        reduction = "mean" if num_items is None else "sum"
        reference = F.cross_entropy(logits.reshape(-1, 13), labels.reshape(-1), reduction=reduction)
        reference = reference if num_items is None else reference / num_items
        (reference * 2.5).backward()
        torch.testing.assert_close(ours, reference)
        for mine, theirs in zip(inputs, reference_inputs):
            torch.testing.assert_close(mine.grad, theirs.grad)


def test_linear_cross_entropy_survives_a_target_probability_below_float32_range():
    hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    weight = torch.tensor([[150.0, 0.0], [-150.0, 0.0], [0.0, 1.0]], requires_grad=True)
    labels = torch.tensor([1, 2])  # row 0: the target logit is 300 below the best, p = e^-300
    loss = linear_cross_entropy(hidden, weight, None, labels)
    reference = F.cross_entropy(F.linear(hidden.double(), weight.double()), labels)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(reference.item(), rel=1e-6)
    loss.backward()
    assert torch.isfinite(hidden.grad).all() and torch.isfinite(weight.grad).all()
