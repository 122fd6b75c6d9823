"""What an MLM caller sees: (batch, seq, vocab) logits, as from any transformers MLM, and sparse only on request."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from hftk.models import HftkBertForMaskedLM

from .test_heads import mlm_batch
from .tiny import build, tiny_bert_config


@pytest.mark.parametrize("sparse_config", [False, True])  # True: folders saved before sparse became opt-in
def test_eval_with_labels_returns_full_logits_and_their_loss(sparse_config):
    ids, mask, labels = mlm_batch()
    model = build(HftkBertForMaskedLM, tiny_bert_config(sparse_prediction=sparse_config))
    with torch.no_grad():
        out = model(ids, attention_mask=mask, labels=labels)
    assert out.logits.shape == (4, 12, 97)
    hand = F.cross_entropy(out.logits.reshape(-1, 97), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, hand)


@pytest.mark.parametrize("train", [False, True])
def test_sparse_prediction_on_request_decodes_masked_rows_only(train):
    ids, mask, labels = mlm_batch()
    model = build(HftkBertForMaskedLM, tiny_bert_config(fused_lm_loss=False)).train(train)
    with torch.no_grad():
        dense = model(ids, attention_mask=mask, labels=labels)
        sparse = model(ids, attention_mask=mask, labels=labels, sparse_prediction=True)
    selected = labels != -100
    assert sparse.logits.shape == (int(selected.sum()), 97)
    torch.testing.assert_close(sparse.logits, dense.logits[selected], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sparse.loss, dense.loss, atol=1e-6, rtol=1e-6)


def test_trainer_evaluation_with_compute_metrics_as_run_mlm(tmp_path):
    """transformers' run_mlm.py evaluates with argmax logits and accuracy over labelled positions."""
    ids, mask, labels = mlm_batch()
    model = build(HftkBertForMaskedLM, tiny_bert_config())
    data = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "labels": labels.tolist()})

    def preprocess_logits_for_metrics(logits, labels):
        return logits.argmax(dim=-1)  # as run_mlm.py

    def compute_metrics(prediction):
        predictions, references = prediction.predictions.reshape(-1), prediction.label_ids.reshape(-1)
        keep = references != -100
        return {"accuracy": float((predictions[keep] == references[keep]).mean())}

    args = TrainingArguments(str(tmp_path), per_device_eval_batch_size=3, report_to=[], use_cpu=True)
    trainer = Trainer(model=model, args=args, eval_dataset=data, compute_metrics=compute_metrics,
                      preprocess_logits_for_metrics=preprocess_logits_for_metrics)
    metrics = trainer.evaluate()

    with torch.no_grad():
        logits = model(ids, attention_mask=mask).logits
    selected = labels != -100
    expected_accuracy = (logits.argmax(-1)[selected] == labels[selected]).float().mean().item()
    # Trainer's eval loss: each batch's mean over its masked tokens, averaged by batch size (3 and 1 here).
    batch_losses = [F.cross_entropy(logits[part][selected[part]], labels[part][selected[part]]) for part in (slice(0, 3), slice(3, 4))]
    expected_loss = ((3 * batch_losses[0] + batch_losses[1]) / 4).item()
    assert metrics["eval_accuracy"] == pytest.approx(expected_accuracy)
    assert metrics["eval_loss"] == pytest.approx(expected_loss, rel=1e-5)
