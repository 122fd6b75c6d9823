"""General distillation's loss (hftk.objectives.distill) against a hand computation from full logits.

The module never builds (batch, seq, vocab) logits; the reference here does, with the models'
own forward passes, so the two are independent computations of the same formula.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForMaskedLM

from hftk.models import HftkBertConfig, HftkBertForMaskedLM, HftkGptConfig, HftkGptForCausalLM
from hftk.distill.model import split_head
from hftk.objectives.distill import PretrainDistillation

TINY = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def reference(student_logits, teacher_logits, labels, temperature, alpha) -> torch.Tensor:
    """α · T² · KL(teacher_T ‖ student_T) + (1 − α) · CE, mean over the target rows (written out, no kl_div)."""
    keep = labels != -100
    s, t, y = student_logits[keep].double(), teacher_logits[keep].double(), labels[keep]
    p_t = torch.softmax(t / temperature, -1)
    kl = (p_t * (torch.log(p_t) - torch.log_softmax(s / temperature, -1))).sum(-1).mean()
    ce = -torch.log_softmax(s, -1).gather(-1, y[:, None]).mean()
    return alpha * temperature**2 * kl + (1 - alpha) * ce


@pytest.mark.parametrize("teacher_class", ["hftk", "bert"])
def test_mlm_loss_matches_full_logits_and_only_masked_rows_reach_the_heads(teacher_class):
    torch.manual_seed(0)
    student = HftkBertForMaskedLM(HftkBertConfig(**{**TINY, "hidden_size": 16, "intermediate_size": 32}))
    if teacher_class == "hftk":
        teacher = HftkBertForMaskedLM(HftkBertConfig(**TINY)).eval()
    else:  # transformers' own BERT: its head is `cls`
        teacher = BertForMaskedLM(BertConfig(**TINY)).eval()
    input_ids = torch.randint(5, 97, (3, 20))
    labels = torch.full_like(input_ids, -100)
    masked = torch.rand(input_ids.shape, generator=torch.Generator().manual_seed(1)) < 0.2
    labels[masked] = input_ids[masked]
    model = PretrainDistillation(student, teacher, "mlm", temperature=2.0, alpha=0.7, chunk_rows=3).train()
    seen = []
    hooks = [head.register_forward_hook(lambda m, i, o: seen.append(o.shape)) for head in (split_head(student)[1], split_head(teacher)[1])]
    loss = model(input_ids=input_ids, labels=labels, sparse_prediction=True).loss
    for hook in hooks:
        hook.remove()
    loss.backward()
    assert all(shape[0] <= 3 for shape in seen) and sum(s[0] for s in seen) >= 2 * int(masked.sum())  # chunks of masked rows only
    student.eval()
    with torch.no_grad():
        expected = reference(student(input_ids).logits, teacher(input_ids).logits, labels, 2.0, 0.7)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    assert student.model.encoder.embeddings.word_embeddings.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


def test_clm_loss_matches_full_logits_and_alpha_zero_is_the_models_own_loss():
    torch.manual_seed(0)
    config = dict(**TINY, bos_token_id=1, eos_token_id=2)
    student = HftkGptForCausalLM(HftkGptConfig(**{**config, "num_hidden_layers": 1}))
    teacher = HftkGptForCausalLM(HftkGptConfig(**config)).eval()
    input_ids = torch.randint(5, 97, (2, 16))
    model = PretrainDistillation(student, teacher, "clm", temperature=1.5, alpha=0.4, chunk_rows=7).train()
    loss = model(input_ids=input_ids, labels=input_ids).loss
    with torch.no_grad():
        shifted = F.pad(input_ids, (0, 1), value=-100)[:, 1:]
        expected = reference(student(input_ids).logits, teacher(input_ids).logits, shifted, 1.5, 0.4)
        torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
        plain = PretrainDistillation(student, teacher, "clm", temperature=1.5, alpha=0.0).train()
        own = student(input_ids=input_ids, labels=input_ids).loss
        torch.testing.assert_close(plain(input_ids=input_ids, labels=input_ids).loss, own, rtol=1e-5, atol=1e-6)
        # T = 1, α = 1 against a teacher that is the student: KL of a distribution with itself is 0
        same = PretrainDistillation(student, student, "clm", temperature=1.0, alpha=1.0).train()
        assert same(input_ids=input_ids, labels=input_ids).loss.abs().item() < 1e-5


def test_hidden_state_loss_goes_through_a_trained_projection_when_widths_differ():
    torch.manual_seed(0)
    student = HftkBertForMaskedLM(HftkBertConfig(**{**TINY, "hidden_size": 16, "intermediate_size": 32}))
    teacher = HftkBertForMaskedLM(HftkBertConfig(**TINY)).eval()
    input_ids = torch.randint(5, 97, (2, 12))
    labels = torch.where(torch.arange(12) % 4 == 0, input_ids, torch.full_like(input_ids, -100))
    pairs = [(0, 0), (1, 1), (2, 2)]
    with_hidden = PretrainDistillation(student, teacher, "mlm", temperature=2.0, alpha=0.5, hidden_weight=3.0, layer_pairs=pairs).train()
    without = PretrainDistillation(student, teacher, "mlm", temperature=2.0, alpha=0.5).train()
    loss = with_hidden(input_ids=input_ids, labels=labels).loss
    with torch.no_grad():
        s = student(input_ids, output_hidden_states=True).hidden_states
        t = teacher(input_ids, output_hidden_states=True).hidden_states
        mse = sum(((with_hidden.projection(s[i]) - t[j]) ** 2).mean() for i, j in pairs) / len(pairs)
        torch.testing.assert_close(loss - without(input_ids=input_ids, labels=labels).loss, 3.0 * mse, rtol=1e-4, atol=1e-6)
    loss.backward()
    assert with_hidden.projection.weight.grad is not None and with_hidden.projection.weight.shape == (32, 16)
