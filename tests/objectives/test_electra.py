"""ELECTRA's pieces against hand computations: replaced-token labels, sampling, the joint loss, the gradient path."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hftk.errors import HftkError
from hftk.models import HftkBertConfig, HftkBertForPreTraining
from hftk.objectives.electra import (
    ElectraPretrainingModel,
    ReplacedTokenDetection,
    _GeneratorLossAndSample,
    generator_config,
    replace_masked,
    sample_tokens,
)
from hftk.recipe import ElectraSection, PretrainRecipe, load_recipe

MASK = 4
SPECIALS = [0, 1, 2, 3, 4]
VOCAB = 50


class _Tokenizer:
    mask_token_id, pad_token_id = MASK, 0
    all_special_ids = SPECIALS

    def __len__(self) -> int:
        return VOCAB


TINY = dict(
    hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, max_position_embeddings=32,
    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
)


def _objective(seed: int = 0, rank: int = 0, accumulation: int = 1, processes: int = 2, batch: int = 3) -> ReplacedTokenDetection:
    recipe = PretrainRecipe.model_validate(
        {"objective": "electra", "model": {"config": TINY}, "data": {"max_seq_length": 16},
         "training": {"seed": seed, "gradient_accumulation_steps": accumulation, "per_device_train_batch_size": batch}}
    )
    return ReplacedTokenDetection(recipe, _Tokenizer(), SimpleNamespace(process_index=rank, num_processes=processes, print=print))


def _batch(seed: int = 0) -> dict:
    return {"input_ids": torch.randint(5, VOCAB, (3, 16), generator=torch.Generator().manual_seed(seed))}


def test_replaced_labels_are_exactly_sample_differs_from_original():
    original = torch.tensor([[2, 10, 11, 12, 13, 3], [2, 20, 21, 22, 23, 3]])
    masked_input = torch.tensor([[2, MASK, 11, MASK, 13, 3], [2, 20, MASK, 22, 23, 3]])  # [0, 4] kept as itself: an 85/15 "stay"
    labels = torch.full_like(original, -100)
    for row, col in [(0, 1), (0, 3), (1, 2), (1, 4)]:
        labels[row, col] = original[row, col]
    sampled = torch.tensor([10, 30, 40, 23])  # row-major over masked positions; the 1st and 4th equal the originals
    replaced, is_replaced = replace_masked(masked_input, labels, sampled)
    expected = torch.tensor([[2, 10, 11, 30, 13, 3], [2, 20, 40, 22, 23, 3]])
    assert torch.equal(replaced, expected)
    assert is_replaced.tolist() == [[0, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0]]


def test_inverse_cdf_sampling_matches_a_hand_walk_and_never_draws_disallowed_ids():
    logits = torch.tensor([[0.0, 5.0, 1.0, 2.0, 0.5], [3.0, 3.0, -1.0, 0.0, 2.0]])
    uniforms = torch.tensor([0.42, 0.999])
    disallowed = torch.tensor([1])
    got = sample_tokens(logits, uniforms, temperature=2.0, disallowed=disallowed)
    for row, u in enumerate(uniforms.tolist()):
        weights = np.exp(logits[row].double().numpy() / 2.0)
        weights[1] = 0.0
        cumulative = np.cumsum(weights / weights.sum())
        assert got[row].item() == int(np.argmax(cumulative > u))
    many = sample_tokens(logits.repeat(500, 1), torch.rand(1000, generator=torch.Generator().manual_seed(0)), 1.0, disallowed)
    assert not (many == 1).any()
    probs = torch.softmax(logits[0].masked_fill(torch.arange(5) == 1, float("-inf")), -1)
    frequency = torch.bincount(many[0::2], minlength=5) / 500
    assert torch.allclose(frequency, probs, atol=0.07)  # 500 draws: binomial sd <= 0.023


def test_prepare_is_reproducible_masks_without_random_tokens_and_scales_the_token_count():
    batch = _batch()
    first, again = _objective().prepare(batch, 3), _objective().prepare(batch, 3)
    for key in ("input_ids", "labels", "sample_uniforms"):
        assert torch.equal(first[key], again[key]), key
    other = _objective().prepare(batch, 4)
    assert not torch.equal(first["sample_uniforms"][:5], other["sample_uniforms"][:5])
    masked = first["labels"] != -100
    assert first["sample_uniforms"].shape == (int(masked.sum()),)
    changed = first["input_ids"][masked]
    assert ((changed == MASK) | (changed == batch["input_ids"][masked])).all()  # ELECTRA: [MASK] or kept, never random
    assert first["num_tokens_in_batch"] == 3 * 16 * 2  # 2 processes
    assert _objective(accumulation=3).prepare(batch, 3)["num_tokens_in_batch"] == 3 * 16 * 2 * 3
    assert "num_tokens_in_batch" not in _objective().prepare(batch, 3, evaluation=True)


def test_a_global_batch_is_masked_and_sampled_alike_at_any_world_size():
    """Two processes with 3 rows each prepare micro-batch 2 of a global batch of 6 as one process with 6 rows does."""
    batch = {"input_ids": torch.randint(5, VOCAB, (6, 16), generator=torch.Generator().manual_seed(1))}
    one = _objective(processes=1, batch=6).prepare(batch, 2)
    parts = [_objective(rank=r, processes=2, batch=3).prepare({"input_ids": batch["input_ids"][3 * r : 3 * r + 3]}, 2) for r in (0, 1)]
    for key in ("input_ids", "labels", "sample_uniforms"):
        assert torch.equal(torch.cat([part[key] for part in parts]), one[key]), key
    assert parts[0]["num_tokens_in_batch"] == one["num_tokens_in_batch"] == 6 * 16  # the global token count


def _joint(seed: int = 0) -> tuple[ReplacedTokenDetection, ElectraPretrainingModel]:
    torch.manual_seed(seed)
    discriminator = HftkBertForPreTraining(HftkBertConfig(vocab_size=VOCAB, **TINY))
    objective = _objective()
    return objective, objective.training_model(discriminator)


def test_joint_loss_equals_a_hand_computation_on_a_tiny_batch():
    objective, joint = _joint()
    joint.eval()
    assert joint.generator.config.hidden_size == 4 and joint.generator.config.embedding_size == 16
    prepared = objective.prepare(_batch(1), 0, evaluation=True)
    with torch.no_grad():
        out = joint(**prepared)
        # By hand: the generator's dense logits, the sampled replacements, then both losses.
        generator_logits = joint.generator(input_ids=prepared["input_ids"]).logits
        masked = prepared["labels"] != -100
        rows = generator_logits[masked]
        generator_loss = F.cross_entropy(rows, prepared["labels"][masked])
        probabilities = torch.softmax(rows.double().index_fill(1, torch.tensor(SPECIALS), float("-inf")), -1)
        sampled = (probabilities.cumsum(-1) <= prepared["sample_uniforms"].double()[:, None]).sum(-1)
        original = torch.where(masked, prepared["labels"], prepared["input_ids"])
        discriminator_input = original.clone()
        discriminator_input[masked] = sampled
        labels = (discriminator_input != original).float()
        discriminator_logits = joint.discriminator(input_ids=discriminator_input).logits
        discriminator_loss = F.binary_cross_entropy_with_logits(discriminator_logits, labels)
    assert torch.equal(out.discriminator_input_ids, discriminator_input)
    assert torch.equal(out.replaced_labels, labels.long()) and 0 < labels.sum() <= masked.sum()
    torch.testing.assert_close(out.generator_loss, generator_loss)
    torch.testing.assert_close(out.discriminator_loss, discriminator_loss)
    torch.testing.assert_close(out.loss, generator_loss + 50.0 * discriminator_loss)


def test_discriminator_loss_reaches_the_generator_only_through_the_shared_embeddings():
    objective, joint = _joint()
    joint.train()
    out = joint(**objective.prepare(_batch(2), 0))
    out.discriminator_loss.backward()
    embeddings = joint.discriminator.model.encoder.embeddings.word_embeddings.weight
    assert joint.generator.model.encoder.embeddings.word_embeddings.weight is embeddings
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0
    generator_only = [p for n, p in joint.generator.named_parameters() if "embeddings" not in n and "decoder" not in n]
    assert generator_only and all(p.grad is None for p in generator_only)


def test_a_generator_larger_than_the_discriminator_and_stray_electra_keys_are_one_line_errors(tmp_path):
    with pytest.raises(HftkError, match=r"electra.generator_hidden_size \(512\) exceeds the discriminator's hidden_size \(256\)") as error:
        load_recipe(PretrainRecipe, "pretrain-electra", ["electra.generator_hidden_size=512"])
    assert "\n" not in str(error.value)
    with pytest.raises(HftkError, match="electra.generator_num_hidden_layers"):
        load_recipe(PretrainRecipe, "pretrain-electra", ["electra.generator_num_hidden_layers=5"])
    with pytest.raises(HftkError, match="objective electra only"):
        load_recipe(PretrainRecipe, "pretrain-default", ["electra.discriminator_weight=10"])
    with pytest.raises(ValueError, match="exceeds"):  # a discriminator loaded from a folder is checked when the generator is built
        generator_config(ElectraSection(generator_hidden_size=64), HftkBertConfig(hidden_size=32, num_attention_heads=2))


def test_chunked_generator_loss_gradients_and_samples_equal_the_unfused_computation():
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(7, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    decoder = torch.nn.Linear(8, VOCAB).double()
    labels = torch.randint(5, VOCAB, (7,), generator=generator)
    uniforms = torch.rand(7, generator=generator)
    disallowed = torch.tensor(SPECIALS)
    loss, samples = _GeneratorLossAndSample.apply(hidden, decoder.weight, decoder.bias, labels, uniforms, disallowed, 1.0, 10.0, 3)
    loss.backward()
    fused_grads = [t.grad.clone() for t in (hidden, decoder.weight, decoder.bias)]
    for t in (hidden, decoder.weight, decoder.bias):
        t.grad = None
    logits = F.linear(hidden, decoder.weight, decoder.bias)
    reference = F.cross_entropy(logits, labels, reduction="sum") / 10.0  # a global denominator, as accumulation passes
    reference.backward()
    torch.testing.assert_close(loss, reference)
    for fused, t in zip(fused_grads, (hidden, decoder.weight, decoder.bias)):
        torch.testing.assert_close(fused, t.grad)
    assert torch.equal(samples, sample_tokens(logits, uniforms, 1.0, disallowed))
