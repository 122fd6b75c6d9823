"""Import BART and Marian (OPUS-MT) checkpoints into hftk_seq2seq.

Both are post-LN encoder-decoders with biases everywhere, one table for source and target
tokens and the output projection tied to it: the converted model is configured to match
(post-LN, biases, BART's embedding LayerNorm or Marian's sqrt(d_model) embedding scale, the
activation, `final_logits_bias` as the output projection's bias) and reproduces the source's
logits. Names change, separate Q/K/V become one fused projection (K/V of cross-attention one
fused KV projection). Positions become learned tables holding the source's positions: BART's
are learned already (minus its 2-row offset); Marian's are fixed sinusoids laid out
[sin | cos] rather than the interleaved layout of hftk's `sinusoidal`, so the exact table is
copied (and is trainable from then on).

T5 is refused: its relative position bias (a learned bias per distance bucket added to every
attention score, no scaling by 1/sqrt(d)) is not one of hftk's position types.
"""

from __future__ import annotations

import torch
from transformers import BartConfig, MarianConfig, PreTrainedModel

from hftk.errors import HftkError
from hftk.models import HftkSeq2SeqConfig, HftkSeq2SeqForConditionalGeneration, HftkSeq2SeqModel

SEQ2SEQ_HEADS: dict[str, type[PreTrainedModel]] = {
    "BartModel": HftkSeq2SeqModel,
    "BartForConditionalGeneration": HftkSeq2SeqForConditionalGeneration,
    "MarianModel": HftkSeq2SeqModel,
    "MarianMTModel": HftkSeq2SeqForConditionalGeneration,
}
SEQ2SEQ_MODEL_TYPES = {"bart": "BartForConditionalGeneration", "marian": "MarianMTModel"}
T5_REFUSAL = (
    "cannot convert T5 checkpoints: T5's relative position bias is not one of hftk_seq2seq's position types "
    "(sinusoidal, learned, rope); convert a BART or Marian checkpoint instead"
)

# Per-layer names, BART/Marian -> hftk (both stacks).
LAYER_RENAMES = {
    "self_attn.out_proj": "attention.out_proj",
    "self_attn_layer_norm": "attention_norm",
    "encoder_attn.q_proj": "cross_attention.q_proj",
    "encoder_attn.out_proj": "cross_attention.out_proj",
    "encoder_attn_layer_norm": "cross_attention_norm",
    "fc1": "mlp.up_proj",
    "fc2": "mlp.down_proj",
    "final_layer_norm": "mlp_norm",
}


def seq2seq_config_to_hftk(config: BartConfig | MarianConfig) -> HftkSeq2SeqConfig:
    """The hftk_seq2seq configuration that computes what a BART or Marian configuration does."""
    name = config.model_type
    if config.encoder_layers != config.decoder_layers:
        raise HftkError(
            f"cannot convert this {name} model: {config.encoder_layers} encoder and {config.decoder_layers} decoder "
            "layers; hftk_seq2seq has the same depth on both sides"
        )
    if (config.encoder_attention_heads, config.encoder_ffn_dim) != (config.decoder_attention_heads, config.decoder_ffn_dim):
        raise HftkError(
            f"cannot convert this {name} model: encoder and decoder differ in attention heads or feed-forward size, "
            "which hftk_seq2seq shares between them"
        )
    if getattr(config, "normalize_before", False) or getattr(config, "add_final_layer_norm", False):
        raise HftkError(f"cannot convert this {name} model: only post-LN BART/Marian layouts are supported")
    if name == "marian" and config.decoder_vocab_size not in (None, config.vocab_size):
        raise HftkError("cannot convert this Marian model: its target vocabulary differs in size from its source one")
    return HftkSeq2SeqConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        num_hidden_layers=config.encoder_layers,
        num_attention_heads=config.encoder_attention_heads,
        intermediate_size=config.encoder_ffn_dim,
        hidden_act=config.activation_function,
        norm_eps=1e-5,  # both use nn.LayerNorm's default
        pre_norm=False,
        embedding_norm=name == "bart",
        scale_embedding=config.scale_embedding,
        position_embedding_type="learned",
        max_position_embeddings=config.max_position_embeddings,
        attention_bias=True,
        mlp_bias=True,
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.attention_dropout,
        initializer_range=config.init_std,
        share_embeddings=getattr(config, "share_encoder_decoder_embeddings", True),
        tie_word_embeddings=config.tie_word_embeddings,
        pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
        forced_eos_token_id=getattr(config, "forced_eos_token_id", None),
    )


def convert_seq2seq_state_dict(state: dict[str, torch.Tensor], model_type: str, head: bool) -> dict[str, torch.Tensor]:
    """Rename BART/Marian weights to hftk_seq2seq's; fuse Q/K/V (self) and K/V (cross)."""
    converted: dict[str, torch.Tensor] = {}
    prefix = "model." if head else ""
    body = {name.removeprefix("model."): tensor for name, tensor in state.items()}
    offset = 2 if model_type == "bart" else 0  # BART's learned table starts 2 rows in
    for stack in ("encoder", "decoder"):
        out = f"{prefix}{stack}."
        converted[out + "embeddings.word_embeddings.weight"] = body.get(f"{stack}.embed_tokens.weight", body["shared.weight"])
        converted[out + "embeddings.position_embeddings.weight"] = body[f"{stack}.embed_positions.weight"][offset:]
        if model_type == "bart":
            for kind in ("weight", "bias"):
                converted[out + f"embeddings.norm.{kind}"] = body[f"{stack}.layernorm_embedding.{kind}"]
        layer = 0
        while f"{stack}.layers.{layer}.self_attn.q_proj.weight" in body:
            source, target = f"{stack}.layers.{layer}.", f"{out}layers.{layer}."
            for kind in ("weight", "bias"):
                qkv = [body[f"{source}self_attn.{p}_proj.{kind}"] for p in "qkv"]
                converted[f"{target}attention.qkv.{kind}"] = torch.cat(qkv, dim=0)
                if stack == "decoder":
                    kv = [body[f"{source}encoder_attn.{p}_proj.{kind}"] for p in "kv"]
                    converted[f"{target}cross_attention.kv.{kind}"] = torch.cat(kv, dim=0)
                for old, new in LAYER_RENAMES.items():
                    if f"{source}{old}.{kind}" in body:
                        converted[f"{target}{new}.{kind}"] = body[f"{source}{old}.{kind}"]
            layer += 1
    if head:
        converted["lm_head.weight"] = state.get("lm_head.weight", body["shared.weight"])
        bias = state.get("final_logits_bias")
        if bias is not None and bias.any():
            converted["lm_head.bias"] = bias.reshape(-1)
    return converted


def convert_seq2seq_model(source: PreTrainedModel) -> PreTrainedModel:
    """Convert a loaded BART or Marian model (bare or with its LM head) into hftk_seq2seq."""
    architecture = type(source).__name__
    if architecture not in SEQ2SEQ_HEADS:
        raise HftkError(f"cannot convert {architecture}: supported encoder-decoders are {', '.join(SEQ2SEQ_HEADS)}")
    head = architecture in ("BartForConditionalGeneration", "MarianMTModel")
    state = convert_seq2seq_state_dict(source.state_dict(), source.config.model_type, head)
    config = seq2seq_config_to_hftk(source.config)
    config.lm_head_bias = "lm_head.bias" in state
    config._attn_implementation = source.config._attn_implementation
    target = SEQ2SEQ_HEADS[architecture](config)
    missing, unexpected = target.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise HftkError(f"conversion of {architecture} left weights unmatched: missing {missing}, unexpected {unexpected}")
    if head:
        target.generation_config = source.generation_config
    return target.eval()
