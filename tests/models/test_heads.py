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


@pytest.mark.parametrize("pre_norm", [True, False])
def test_sparse_prediction_loss_and_gradients_equal_dense(pre_norm):
    ids, mask, labels = mlm_batch()
    losses, gradients = {}, {}
    for sparse in (True, False):
        model = build(HftkBertForMaskedLM, tiny_bert_config(sparse_prediction=sparse, pre_norm=pre_norm)).train()
        out = model(ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        losses[sparse], gradients[sparse] = out.loss, grads(model)
        if sparse:
            assert out.logits.shape == (int((labels != -100).sum()), 97)
        else:
            assert out.logits.shape == (4, 12, 97)
            hand = F.cross_entropy(out.logits.reshape(-1, 97), labels.reshape(-1), ignore_index=-100)
            torch.testing.assert_close(out.loss, hand)
    torch.testing.assert_close(losses[True], losses[False], atol=1e-6, rtol=1e-6)
    assert gradients[True].keys() == gradients[False].keys() and len(gradients[True]) > 10
    for name in gradients[True]:
        torch.testing.assert_close(gradients[True][name], gradients[False][name], atol=1e-6, rtol=1e-5, msg=name)


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


@pytest.mark.parametrize("sparse", [True, False])
def test_masked_lm_num_items_in_batch_makes_gradient_accumulation_exact(sparse):
    ids, mask, labels = mlm_batch()
    model = build(HftkBertForMaskedLM, tiny_bert_config(sparse_prediction=sparse)).train()
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    micro_batch_equivalence(model, batch, int((labels != -100).sum()))


def test_causal_lm_loss_is_shifted_cross_entropy_and_accumulates_exactly():
    ids, mask, _ = mlm_batch(1)
    labels = ids.masked_fill(mask == 0, -100)
    model = build(HftkGptForCausalLM, tiny_gpt_config()).train()
    out = model(ids, attention_mask=mask, labels=labels)
    hand = F.cross_entropy(out.logits[:, :-1].reshape(-1, 97), labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, hand)
    model.zero_grad()
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    micro_batch_equivalence(model, batch, int((labels[:, 1:] != -100).sum()))


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
