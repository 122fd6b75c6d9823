"""hftk_seq2seq against an independent reference, and its generation cache.

The reference is PyTorch's own `nn.TransformerEncoder`/`nn.TransformerDecoder` (the paper's
layer, pre-LN with `norm_first=True` or post-LN), with the paper's sinusoidal positions and
sqrt(d_model)-scaled embeddings written out here. BART and Marian references are in
tests/commands/test_convert_seq2seq.py.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hftk.models import HftkSeq2SeqForConditionalGeneration, HftkSeq2SeqModel
from hftk.models.cache_compat_hftk import output_cache
from hftk.models.modeling_hftk_seq2seq import shift_tokens_right

from .tiny import build, cache_keyword, tiny_seq2seq_config

SOURCE = torch.tensor([[5, 17, 33, 8, 41, 9, 12, 2], [22, 7, 61, 4, 2, 0, 0, 0]])
SOURCE_MASK = (SOURCE != 0).long()
TARGET = torch.tensor([[1, 44, 9, 70, 3], [1, 8, 8, 15, 66]])


def paper_positions(length: int, dim: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))."""
    table = torch.zeros(length, dim)
    for pos in range(length):
        for i in range(0, dim, 2):
            angle = pos / 10000 ** (i / dim)
            table[pos, i], table[pos, i + 1] = math.sin(angle), math.cos(angle)
    return table


def torch_reference(config):
    """PyTorch's Transformer layers configured as the hftk config says."""
    d, layers = config.hidden_size, config.num_hidden_layers
    kwargs = dict(
        d_model=d,
        nhead=config.num_attention_heads,
        dim_feedforward=config.intermediate_size,
        dropout=0.0,
        activation="gelu",
        layer_norm_eps=config.norm_eps,
        batch_first=True,
        norm_first=config.pre_norm,
    )
    final = (lambda: nn.LayerNorm(d, eps=config.norm_eps)) if config.pre_norm else (lambda: None)
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(**kwargs), layers, final(), enable_nested_tensor=False)
    decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(**kwargs), layers, final())
    return encoder.eval(), decoder.eval()


@torch.no_grad()
def copy_into_reference(model: HftkSeq2SeqForConditionalGeneration, encoder, decoder) -> None:
    d = model.config.hidden_size
    for ours, theirs in zip(model.model.encoder.layers, encoder.layers):
        theirs.self_attn.in_proj_weight.copy_(ours.attention.qkv.weight)
        theirs.self_attn.in_proj_bias.copy_(ours.attention.qkv.bias)
        theirs.self_attn.out_proj.load_state_dict(ours.attention.out_proj.state_dict())
        theirs.linear1.load_state_dict(ours.mlp.up_proj.state_dict())
        theirs.linear2.load_state_dict(ours.mlp.down_proj.state_dict())
        theirs.norm1.load_state_dict(ours.attention_norm.state_dict())
        theirs.norm2.load_state_dict(ours.mlp_norm.state_dict())
    for ours, theirs in zip(model.model.decoder.layers, decoder.layers):
        theirs.self_attn.in_proj_weight.copy_(ours.attention.qkv.weight)
        theirs.self_attn.in_proj_bias.copy_(ours.attention.qkv.bias)
        theirs.self_attn.out_proj.load_state_dict(ours.attention.out_proj.state_dict())
        cross = ours.cross_attention
        theirs.multihead_attn.in_proj_weight.copy_(torch.cat([cross.q_proj.weight, cross.kv.weight]))
        theirs.multihead_attn.in_proj_bias.copy_(torch.cat([cross.q_proj.bias, cross.kv.bias]))
        theirs.multihead_attn.out_proj.load_state_dict(cross.out_proj.state_dict())
        theirs.linear1.load_state_dict(ours.mlp.up_proj.state_dict())
        theirs.linear2.load_state_dict(ours.mlp.down_proj.state_dict())
        theirs.norm1.load_state_dict(ours.attention_norm.state_dict())
        theirs.norm2.load_state_dict(ours.cross_attention_norm.state_dict())
        theirs.norm3.load_state_dict(ours.mlp_norm.state_dict())
    if model.config.pre_norm:
        encoder.norm.load_state_dict(model.model.encoder.final_norm.state_dict())
        decoder.norm.load_state_dict(model.model.decoder.final_norm.state_dict())
    assert d == encoder.layers[0].self_attn.embed_dim


@pytest.mark.parametrize("pre_norm", [True, False], ids=["pre-LN", "post-LN"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_logits_match_pytorch_transformer_with_the_papers_positions(pre_norm, attn):
    config = tiny_seq2seq_config(
        pre_norm=pre_norm, attention_bias=True, mlp_bias=True, norm_eps=1e-5, initializer_range=0.2
    )
    config._attn_implementation = attn
    model = build(HftkSeq2SeqForConditionalGeneration, config)
    encoder, decoder = torch_reference(config)
    copy_into_reference(model, encoder, decoder)

    embedding = model.get_input_embeddings().weight
    d = config.hidden_size
    positions = paper_positions(16, d)
    with torch.no_grad():
        source = embedding[SOURCE] * math.sqrt(d) + positions[: SOURCE.shape[1]]
        target = embedding[TARGET] * math.sqrt(d) + positions[: TARGET.shape[1]]
        memory = encoder(source, src_key_padding_mask=SOURCE_MASK == 0)
        causal = nn.Transformer.generate_square_subsequent_mask(TARGET.shape[1])
        states = decoder(target, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=SOURCE_MASK == 0)
        expected = states @ embedding.T
        ours = model(input_ids=SOURCE, attention_mask=SOURCE_MASK, decoder_input_ids=TARGET)
    real = SOURCE_MASK.bool()
    torch.testing.assert_close(ours.encoder_last_hidden_state[real], memory[real], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.logits, expected, atol=1e-4, rtol=1e-4)


def test_labels_shift_right_behind_the_start_token_and_the_loss_is_their_cross_entropy():
    config = tiny_seq2seq_config(decoder_start_token_id=1, hidden_dropout_prob=0.0)
    model = build(HftkSeq2SeqForConditionalGeneration, config)
    labels = torch.tensor([[44, 9, 70, 2, -100], [8, 8, 15, 66, 2]])
    decoder_inputs = shift_tokens_right(labels, pad_token_id=0, decoder_start_token_id=1)
    assert decoder_inputs.tolist() == [[1, 44, 9, 70, 2], [1, 8, 8, 15, 66]]
    with torch.no_grad():
        out = model(input_ids=SOURCE, attention_mask=SOURCE_MASK, labels=labels)
        explicit = model(input_ids=SOURCE, attention_mask=SOURCE_MASK, decoder_input_ids=decoder_inputs).logits
    torch.testing.assert_close(out.logits, explicit)
    expected = F.cross_entropy(explicit.reshape(-1, explicit.shape[-1]), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, expected)

    model.train()  # the fused loss (no logits) must give the same number and gradients as the plain one
    fused = model(input_ids=SOURCE, attention_mask=SOURCE_MASK, labels=labels)
    assert fused.logits is None
    torch.testing.assert_close(fused.loss, expected, atol=1e-5, rtol=1e-5)
    model.config.label_smoothing = 0.1
    smoothed = model(input_ids=SOURCE, attention_mask=SOURCE_MASK, labels=labels).loss
    expected_smoothed = F.cross_entropy(
        explicit.reshape(-1, explicit.shape[-1]), labels.reshape(-1), ignore_index=-100, label_smoothing=0.1
    )
    torch.testing.assert_close(smoothed, expected_smoothed, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("position", ["sinusoidal", "learned", "rope"])
def test_cached_generation_equals_uncached_and_cross_attention_is_computed_once(position):
    config = tiny_seq2seq_config(position_embedding_type=position, initializer_range=0.2)
    model = build(HftkSeq2SeqForConditionalGeneration, config)
    calls = []
    hooks = [layer.cross_attention.kv.register_forward_hook(lambda *_: calls.append(1)) for layer in model.model.decoder.layers]
    settings = dict(attention_mask=SOURCE_MASK, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    cached = model.generate(SOURCE, **settings)
    assert len(calls) == config.num_hidden_layers  # once per layer for the whole generation
    for hook in hooks:
        hook.remove()
    uncached = model.generate(SOURCE, use_cache=False, **settings)
    assert cached.shape == (2, 9) and cached[:, 0].tolist() == [config.decoder_start_token_id] * 2
    assert torch.equal(cached, uncached)
    beams = model.generate(SOURCE, num_beams=4, **settings)
    assert torch.equal(beams, model.generate(SOURCE, num_beams=4, use_cache=False, **settings))
    # greedy decoding by hand, one full forward per token: what the cache must reproduce
    by_hand = torch.full((2, 1), config.decoder_start_token_id)
    with torch.no_grad():
        for _ in range(8):
            logits = model(input_ids=SOURCE, attention_mask=SOURCE_MASK, decoder_input_ids=by_hand).logits[:, -1]
            logits[:, config.eos_token_id] = -float("inf")  # min_new_tokens
            by_hand = torch.cat([by_hand, logits.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(cached, by_hand)


@pytest.mark.parametrize("cache_name", ["past_key_values", "cache"])  # "cache": the name from transformers 5.24 on
def test_cached_decoder_steps_equal_the_full_forward(cache_name):
    model = build(HftkSeq2SeqForConditionalGeneration, tiny_seq2seq_config(initializer_range=0.2))
    target = torch.randint(5, 90, (2, 7))
    source = dict(input_ids=SOURCE, attention_mask=SOURCE_MASK)
    with torch.no_grad():
        full = model(**source, decoder_input_ids=target).logits
        first = model(**source, decoder_input_ids=target[:, :3], use_cache=True)
        cache, steps = output_cache(first), [first.logits]
        for t in range(3, 7):
            with cache_keyword(cache_name):
                out = model(**source, decoder_input_ids=target[:, t : t + 1], use_cache=True, **{cache_name: cache})
            cache = output_cache(out)
            steps.append(out.logits)
    assert cache.self_attention_cache.get_seq_length() == 7
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_sampling_is_reproducible_by_seed_and_differs_between_seeds():
    model = build(HftkSeq2SeqForConditionalGeneration, tiny_seq2seq_config(initializer_range=0.2))
    settings = dict(attention_mask=SOURCE_MASK, max_new_tokens=12, min_new_tokens=12, do_sample=True, top_k=0)
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        runs.append(model.generate(SOURCE, **settings))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_separate_source_and_target_tables_and_untied_output():
    config = tiny_seq2seq_config(share_embeddings=False, tie_word_embeddings=False)
    model = build(HftkSeq2SeqForConditionalGeneration, config)
    tables = [model.model.encoder.embeddings.word_embeddings.weight, model.model.decoder.embeddings.word_embeddings.weight]
    assert tables[0].data_ptr() != tables[1].data_ptr() and not torch.equal(tables[0], tables[1])
    assert model.lm_head.weight.data_ptr() != tables[1].data_ptr()
    shared = build(HftkSeq2SeqModel, tiny_seq2seq_config(tie_word_embeddings=False))
    assert shared.encoder.embeddings.word_embeddings.weight is shared.decoder.embeddings.word_embeddings.weight


def test_translation_summarization_and_text2text_pipelines_decode_what_generate_gives(bert_tokenizer, tmp_path):
    """transformers 5 removed these pipelines; the saved config names hftk's for them (custom_pipelines)."""
    from transformers import pipeline

    config = tiny_seq2seq_config(
        vocab_size=len(bert_tokenizer), max_position_embeddings=128, initializer_range=0.2,
        pad_token_id=0, bos_token_id=101, eos_token_id=102, decoder_start_token_id=101,
    )
    model = build(HftkSeq2SeqForConditionalGeneration, config)
    model.save_pretrained(tmp_path)
    bert_tokenizer.save_pretrained(tmp_path)
    text = "The quick brown fox jumps over the lazy dog near the river bank."
    encoded = bert_tokenizer("translate: " + text, return_tensors="pt")
    expected = bert_tokenizer.decode(
        model.generate(encoded["input_ids"], attention_mask=encoded["attention_mask"], max_new_tokens=6, num_beams=2)[0],
        skip_special_tokens=True,
    )
    assert expected.strip()
    for task, key in [("translation", "translation_text"), ("summarization", "summary_text"),
                      ("text2text-generation", "generated_text")]:
        pipe = pipeline(task, model=str(tmp_path), trust_remote_code=True, max_new_tokens=6, num_beams=2)
        assert pipe(text, prefix="translate: ") == [{key: expected}], task
