"""Decoding with the KV cache must give exactly what full recomputation gives."""

from __future__ import annotations

import pytest
import torch

from hftk.models import HftkGptForCausalLM
from hftk.models.cache_compat_hftk import output_cache

from .tiny import build, cache_keyword, tiny_gpt_config

NEW_TOKENS = 12


def decoder(position: str, implementation: str = "sdpa") -> HftkGptForCausalLM:
    # No eos, so every run decodes all NEW_TOKENS; a wide untied init so greedy decoding does not just repeat a token.
    model = build(HftkGptForCausalLM, tiny_gpt_config(position_embedding_type=position, eos_token_id=None, pad_token_id=0, initializer_range=0.3, tie_word_embeddings=False))
    model.set_attn_implementation(implementation)
    model.generation_config.eos_token_id = None
    return model


def greedy_by_hand(model: HftkGptForCausalLM, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    """Argmax over a full forward of the whole sequence at every step: no cache anywhere."""
    ids = prompt
    with torch.no_grad():
        for _ in range(steps):
            logits = model(ids, use_cache=False).logits
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=-1)
    return ids


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("position", ["sinusoidal", "learned", "rope"])
def test_cached_greedy_generation_equals_full_recomputation(position, implementation):
    model = decoder(position, implementation)
    prompt = torch.tensor([[5, 17, 33, 8, 41]])
    cached = model.generate(prompt, max_new_tokens=NEW_TOKENS, do_sample=False, use_cache=True)
    uncached = model.generate(prompt, max_new_tokens=NEW_TOKENS, do_sample=False, use_cache=False)
    by_hand = greedy_by_hand(model, prompt, NEW_TOKENS)
    assert cached.shape == (1, 5 + NEW_TOKENS)
    assert cached.tolist() == uncached.tolist() == by_hand.tolist()
    assert len(set(cached[0, 5:].tolist())) > 1  # not a degenerate constant continuation


@pytest.mark.parametrize("cache_name", ["past_key_values", "cache"])  # "cache": the name from transformers 5.24 on
def test_cached_step_logits_equal_full_forward_logits(cache_name):
    model = decoder("rope")
    ids = torch.randint(3, 97, (2, 11))
    with torch.no_grad():
        full = model(ids, use_cache=False).logits
        first = model(ids[:, :6], use_cache=True)
        cache = output_cache(first)
        steps = [first.logits]
        for t in range(6, 11):
            with cache_keyword(cache_name):
                out = model(ids[:, t : t + 1], use_cache=True, **{cache_name: cache})
            cache = output_cache(out)
            steps.append(out.logits)
    assert cache.get_seq_length() == 11
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("position", ["learned", "rope"])
def test_batched_left_padded_generation_equals_one_by_one(position, implementation):
    model = decoder(position, implementation)
    prompts = [[5, 17, 33, 8, 41, 9], [22, 7], [61, 4, 90]]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    batched = model.generate(ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False)
    for i, prompt in enumerate(prompts):
        alone = model.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, do_sample=False)
        assert batched[i, width:].tolist() == alone[0, len(prompt) :].tolist()


def test_decoding_projection_equals_lm_head_and_follows_weight_updates():
    """Both decoding layouts equal `lm_head`: one row through the cached transposed copy (which must
    never serve stale weights), a few rows (beams, small batches) as weight @ hidden.T."""
    model = build(HftkGptForCausalLM, tiny_gpt_config())  # tied: lm_head.weight is the embedding
    one, few = torch.randn(1, 1, 32), torch.randn(3, 2, 32)

    def check() -> None:
        for hidden in (one, few):
            torch.testing.assert_close(model._project(hidden), model.lm_head(hidden), atol=1e-5, rtol=1e-5)

    with torch.no_grad():
        check()
        assert model._decode_weight is not None
        model.lm_head.weight.mul_(2.0)  # in place, as an optimizer step updates it
        check()
        model.load_state_dict(build(HftkGptForCausalLM, tiny_gpt_config(), seed=5).state_dict())
        check()
    # A real training step, then decoding again.
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    ids = torch.randint(3, 97, (2, 8))
    model(ids, labels=ids).loss.backward()
    optimizer.step()
    model.eval()
    model.generation_config.eos_token_id = None  # decode all 6 tokens
    with torch.no_grad():
        check()
        prompt = torch.tensor([[5, 17, 33]])
        assert model.generate(prompt, max_new_tokens=6, do_sample=False).tolist() == greedy_by_hand(model, prompt, 6).tolist()
    # Many rows (a full forward) take the ordinary path.
    model._decode_weight = None
    with torch.no_grad():
        model(torch.randint(3, 97, (4, 8)), use_cache=False)
    assert model._decode_weight is None
