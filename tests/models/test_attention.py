"""Attention and positions: fast kernels against the textbook formula, masks, padding, RoPE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hftk.models import HftkBertModel, HftkGptModel
from hftk.models.modeling_hftk import RotaryEmbedding, SelfAttention, apply_rotary, eager_attention_forward, sinusoidal_table

from .tiny import build, tiny_bert_config, tiny_gpt_config

FAMILIES = {"bert": (HftkBertModel, tiny_bert_config), "gpt": (HftkGptModel, tiny_gpt_config)}
VARIANTS = {
    "post-ln": dict(pre_norm=False, attention_bias=True, mlp_bias=True, embedding_norm=True),
    "pre-ln": dict(pre_norm=True),
    "pre-ln-gated-rms": dict(pre_norm=True, gated_ffn=True, hidden_act="silu", norm_type="rmsnorm", norm_eps=1e-6),
}


def padded_batch(vocab: int = 97) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    ids = torch.randint(3, vocab, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    return ids, mask


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("position", ["sinusoidal", "learned", "rope"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_eager_and_sdpa_agree_with_padding(family, position, variant):
    model_class, make_config = FAMILIES[family]
    model = build(model_class, make_config(position_embedding_type=position, **VARIANTS[variant]))
    ids, mask = padded_batch()
    outputs = {}
    for implementation in ("eager", "sdpa"):
        model.set_attn_implementation(implementation)
        with torch.no_grad():
            outputs[implementation] = model(ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    assert outputs["eager"].abs().max() > 0.1
    torch.testing.assert_close(outputs["sdpa"][real], outputs["eager"][real], atol=1e-5, rtol=1e-5)


def test_eager_attention_matches_torch_sdpa_called_directly():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8) for _ in range(3))
    module = torch.nn.Module().eval()
    allowed = torch.rand(2, 1, 5, 5) > 0.3
    allowed[..., 0] = True  # every query keeps at least one key
    ours, weights = eager_attention_forward(module, q, k, v, allowed, scaling=8**-0.5)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    torch.testing.assert_close(ours, reference.transpose(1, 2), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 5))
    assert (weights[~allowed.expand_as(weights)] == 0).all()

    # An additive float mask means the same as the boolean one.
    additive = torch.zeros(2, 1, 5, 5).masked_fill(~allowed, torch.finfo(torch.float32).min)
    torch.testing.assert_close(eager_attention_forward(module, q, k, v, additive, scaling=8**-0.5)[0], ours)


def test_eager_causal_without_mask_matches_torch_is_causal_and_cached_queries():
    torch.manual_seed(0)
    module = torch.nn.Module().eval()
    module.is_causal = True
    q, k, v = (torch.randn(1, 2, 6, 4) for _ in range(3))
    ours, _ = eager_attention_forward(module, q, k, v, None, scaling=0.5)
    reference = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(ours, reference.transpose(1, 2), atol=1e-6, rtol=1e-5)
    # Two new queries against six cached keys: query i sits at position 4 + i and sees keys 0..4+i.
    q_new = torch.randn(1, 2, 2, 4)
    bottom_right = torch.tensor([[True] * 5 + [False], [True] * 6])
    ours, _ = eager_attention_forward(module, q_new, k, v, None, scaling=0.5)
    reference = F.scaled_dot_product_attention(q_new, k, v, attn_mask=bottom_right, scale=0.5)
    torch.testing.assert_close(ours, reference.transpose(1, 2), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("is_causal", [False, True])
def test_self_attention_module_equals_hand_written_multi_head_attention(implementation, is_causal):
    config = tiny_bert_config(attention_bias=True)
    config._attn_implementation = implementation
    torch.manual_seed(0)
    attention = SelfAttention(config, layer_idx=0, is_causal=is_causal).eval()
    x = torch.randn(2, 7, 32)
    with torch.no_grad():
        ours, _ = attention(x, None)
        q, k, v = F.linear(x, attention.qkv.weight, attention.qkv.bias).split(32, dim=-1)
        heads = lambda t: t.view(2, 7, 4, 8).transpose(1, 2)  # noqa: E731
        context = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=is_causal)
        reference = attention.out_proj(context.transpose(1, 2).reshape(2, 7, 32))
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=1e-5)


def test_sinusoidal_table_is_the_formula_of_vaswani_et_al():
    dim = 16
    table = sinusoidal_table(50, dim)
    for pos in (0, 1, 7, 49):
        for i in range(dim // 2):
            angle = pos / 10000 ** (2 * i / dim)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


def test_sinusoidal_embeddings_add_the_table_to_the_tokens():
    model = build(HftkGptModel, tiny_gpt_config(position_embedding_type="sinusoidal", type_vocab_size=0))
    ids = torch.tensor([[5, 6, 7, 8]])
    embeddings = model.decoder.embeddings
    with torch.no_grad():
        added = embeddings(ids, None, torch.arange(4)[None], None) - embeddings.word_embeddings(ids)
    torch.testing.assert_close(added[0], sinusoidal_table(64, 32)[:4])


def test_rope_rotates_feature_pairs_by_position_times_frequency():
    head_dim, base = 8, 10000.0
    rotary = RotaryEmbedding(head_dim, base)
    x = torch.randn(1, 1, 3, head_dim)
    positions = torch.tensor([[0, 3, 11]])
    cos, sin = rotary(positions, torch.float32)
    rotated = apply_rotary(x, cos, sin)
    half = head_dim // 2
    for t, pos in enumerate(positions[0].tolist()):
        for i in range(half):
            angle = pos * base ** (-2 * i / head_dim)
            a, b = x[0, 0, t, i].item(), x[0, 0, t, i + half].item()
            assert rotated[0, 0, t, i].item() == pytest.approx(a * math.cos(angle) - b * math.sin(angle), abs=1e-5)
            assert rotated[0, 0, t, i + half].item() == pytest.approx(b * math.cos(angle) + a * math.sin(angle), abs=1e-5)


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    rotary = RotaryEmbedding(16, 10000.0)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(m: int, n: int) -> float:
        cos_m, sin_m = rotary(torch.tensor([[m]]), torch.float64)
        cos_n, sin_n = rotary(torch.tensor([[n]]), torch.float64)
        return (apply_rotary(q.double(), cos_m, sin_m) * apply_rotary(k.double(), cos_n, sin_n)).sum().item()

    for m, n in [(0, 0), (5, 2), (2, 5), (9, 1)]:
        for shift in (1, 17, 300):
            assert score(m + shift, n + shift) == pytest.approx(score(m, n), abs=1e-5)
    assert abs(score(5, 2) - score(2, 5)) > 1e-3  # direction matters: it is not a plain distance


def test_rope_model_is_invariant_to_shifting_all_positions():
    model = build(HftkGptModel, tiny_gpt_config(position_embedding_type="rope", type_vocab_size=0))
    ids = torch.randint(3, 97, (2, 8))
    with torch.no_grad():
        base = model(ids, position_ids=torch.arange(8)[None], use_cache=False).last_hidden_state
        shifted = model(ids, position_ids=torch.arange(8)[None] + 13, use_cache=False).last_hidden_state
    torch.testing.assert_close(shifted, base, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("position", ["sinusoidal", "learned", "rope"])
def test_decoder_never_looks_ahead(implementation, position):
    model = build(HftkGptModel, tiny_gpt_config(position_embedding_type=position))
    model.set_attn_implementation(implementation)
    torch.manual_seed(3)
    ids = torch.randint(3, 97, (2, 10))
    with torch.no_grad():
        reference = model(ids, use_cache=False).last_hidden_state
        for t in (0, 4, 8):
            changed = ids.clone()
            changed[:, t + 1 :] = torch.randint(3, 97, changed[:, t + 1 :].shape)
            out = model(changed, use_cache=False).last_hidden_state
            torch.testing.assert_close(out[:, : t + 1], reference[:, : t + 1], atol=1e-6, rtol=1e-6)
            assert (out[:, t + 1 :] - reference[:, t + 1 :]).abs().max() > 1e-3  # the future does change


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("position", ["sinusoidal", "learned", "rope"])
@pytest.mark.parametrize("family", FAMILIES)
def test_right_padding_leaves_real_positions_unchanged(family, position, implementation):
    model_class, make_config = FAMILIES[family]
    model = build(model_class, make_config(position_embedding_type=position))
    model.set_attn_implementation(implementation)
    ids, mask = padded_batch()
    ids = ids.masked_fill(mask == 0, 0)
    with torch.no_grad():
        batched = model(ids, attention_mask=mask).last_hidden_state
        for i in range(len(ids)):
            n = int(mask[i].sum())
            alone = model(ids[i : i + 1, :n]).last_hidden_state
            torch.testing.assert_close(batched[i, :n], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("position", ["sinusoidal", "learned", "rope"])
def test_decoder_left_padding_with_position_ids_as_generate_does(position, implementation):
    model = build(HftkGptModel, tiny_gpt_config(position_embedding_type=position))
    model.set_attn_implementation(implementation)
    torch.manual_seed(4)
    lengths = [9, 5, 2]
    ids = torch.zeros(3, 9, dtype=torch.long)
    mask = torch.zeros(3, 9, dtype=torch.long)
    examples = [torch.randint(3, 97, (n,)) for n in lengths]
    for i, example in enumerate(examples):
        ids[i, 9 - len(example) :] = example
        mask[i, 9 - len(example) :] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        batched = model(ids, attention_mask=mask, position_ids=position_ids, use_cache=False).last_hidden_state
        for i, example in enumerate(examples):
            alone = model(example[None], use_cache=False).last_hidden_state
            torch.testing.assert_close(batched[i, 9 - len(example) :], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_sdpa_in_bf16_matches_eager_under_autocast_and_in_bf16_weights(family):
    """bf16 SDPA runs in float32 on CPUs without AMX (faster there); the block's output dtype is unchanged."""
    model_class, make_config = FAMILIES[family]
    ids, mask = padded_batch()
    for autocast in (True, False):
        outputs = {}
        for implementation in ("eager", "sdpa"):
            model = build(model_class, make_config(position_embedding_type="rope", attn_implementation=implementation))
            if not autocast:
                model = model.to(torch.bfloat16)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                outputs[implementation] = model(ids, attention_mask=mask).last_hidden_state
        real = mask.bool()
        assert outputs["sdpa"].dtype == outputs["eager"].dtype == (torch.float32 if autocast else torch.bfloat16)
        torch.testing.assert_close(outputs["sdpa"][real].float(), outputs["eager"][real].float(), rtol=0.05, atol=0.05)
