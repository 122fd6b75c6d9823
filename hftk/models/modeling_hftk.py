"""The Transformer shared by hftk's encoder and decoder: embeddings, attention, feed-forward, blocks.

Self-contained on purpose: `save_pretrained` copies this file (and the files that import
it) next to the weights, so it may import only torch/transformers and nothing else from hftk.

Shapes: B batch, T query length, S key length (T + cached tokens), H heads, D head size.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs

from .attention_hftk import ATTENTION_FUNCTIONS
from .cache_compat_hftk import cache_field, causal_mask, replays_in_backward
from .configuration_hftk import HftkConfig

# ---------------------------------------------------------------------------------------------
# Positional encodings
# ---------------------------------------------------------------------------------------------


def sinusoidal_table(num_positions: int, dim: int) -> torch.Tensor:
    """The fixed encoding of "Attention Is All You Need": sin on even, cos on odd features."""
    position = torch.arange(num_positions, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE): rotates query/key feature pairs by position-dependent angles."""

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    @torch.no_grad()
    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of shape (B or 1, T, D); attention inserts the head dimensions it needs."""
        angles = position_ids[..., None].float() * self.inv_freq  # (B or 1, T, D/2)
        angles = torch.cat((angles, angles), dim=-1)  # (B or 1, T, D)
        return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + rotate_half(x) * sin


class ScaledEmbedding(nn.Embedding):
    """Token embeddings multiplied by sqrt(embedding_dim), as the paper (and BART, Marian) do.

    The scale lives in the token table itself, as transformers' scaled word embeddings do, so
    `get_input_embeddings()(ids)` gives exactly what the model adds positions to.
    """

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(input_ids) * math.sqrt(self.embedding_dim)


class Embeddings(nn.Module):
    """Token embeddings plus absolute positions (learned or sinusoidal) and token types.

    With `rope` nothing positional is added here: the rotation happens inside attention.
    The tables are `embedding_size` wide (ELECTRA's generator reads the discriminator's wider
    embeddings; `HftkTransformer` projects them to `hidden_size`).
    """

    def __init__(self, config: HftkConfig) -> None:
        super().__init__()
        width = embedding_width(config)
        table = ScaledEmbedding if getattr(config, "scale_embedding", False) else nn.Embedding
        self.word_embeddings = table(config.vocab_size, width, config.pad_token_id)
        self.position_embeddings = None
        if config.position_embedding_type == "learned":
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, width)
        elif config.position_embedding_type == "sinusoidal":
            table = sinusoidal_table(config.max_position_embeddings, width)
            self.register_buffer("sinusoidal", table, persistent=False)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, width) if config.type_vocab_size > 0 else None
        self.norm = make_norm(config, width) if config.embedding_norm else None
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.position_embedding_type = config.position_embedding_type

    def forward(
        self,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        position_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None,
    ) -> torch.Tensor:
        x = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        if self.position_embeddings is not None:
            x = x + self.position_embeddings(position_ids)
        elif self.position_embedding_type == "sinusoidal":
            x = x + self.sinusoidal[position_ids].to(x.dtype)
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                x = x + self.token_type_embeddings.weight[0]
            else:
                x = x + self.token_type_embeddings(token_type_ids)
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)


# ---------------------------------------------------------------------------------------------
# Attention, feed-forward, block
# ---------------------------------------------------------------------------------------------


def make_norm(config: HftkConfig, width: int | None = None) -> nn.Module:
    width = width or config.hidden_size
    if config.norm_type == "rmsnorm":
        return nn.RMSNorm(width, eps=config.norm_eps)
    return nn.LayerNorm(width, eps=config.norm_eps)


def embedding_width(config: HftkConfig) -> int:
    """The token embeddings' width: `embedding_size` where the config has one (hftk_bert), else `hidden_size`."""
    return getattr(config, "embedding_size", None) or config.hidden_size


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Textbook attention, softmax(QK^T / sqrt(D) + mask) V: the reference the fast paths must match.

    `attention_mask` is the 4D mask from transformers' masking utilities: boolean (True =
    may attend) or additive float. Returns (B, T, H, D) outputs and (B, H, T, S) weights.
    """
    scores = torch.matmul(query, key.transpose(-2, -1)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    elif getattr(module, "is_causal", False) and query.shape[-2] > 1:
        t, s = query.shape[-2], key.shape[-2]
        causal = torch.ones(t, s, dtype=torch.bool, device=query.device).tril(diagonal=s - t)
        scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection.

    The kernel is chosen by `config._attn_implementation` (`sdpa` by default, `eager` as the
    reference, or any function registered in transformers' `AttentionInterface`); hftk's
    `sdpa` entry is attention_hftk's (float32 for bf16 on CPUs without AMX).
    """

    def __init__(self, config: HftkConfig, layer_idx: int, is_causal: bool) -> None:
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.is_causal = is_causal
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.scaling = self.head_dim**-0.5
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.attention_bias)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.attention_bias)
        self.attention_dropout = config.attention_probs_dropout_prob

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        past_key_values: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Outputs and attention weights (None from kernels that do not compute them, like SDPA)."""
        batch, length, _ = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.num_heads, self.head_dim)
        if rotary is not None:
            # One rotation for queries and keys together, on memory that is contiguous per token,
            # in the projection's dtype (bf16 under autocast: no float32 round trip before SDPA).
            cos, sin = (t.to(qkv.dtype)[:, :, None, None, :] for t in rotary)
            q, k = apply_rotary(qkv[:, :, :2], cos, sin).unbind(2)
        else:
            q, k = qkv[:, :, 0], qkv[:, :, 1]
        # (B, H, T, D) views of (B, T, H, D) memory: SDPA reads strides, so no copies here.
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), qkv[:, :, 2].transpose(1, 2)
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        attention: Callable = ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        out, weights = attention(
            self,
            q,
            k,
            v,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        return self.out_proj(out.reshape(batch, length, -1)), weights


class CrossAttention(nn.Module):
    """Multi-head attention from the decoder's states (queries) to the encoder's (keys, values).

    The keys and values depend only on the source, so under generation they are computed on
    the first step and kept in the cross-attention half of transformers' `EncoderDecoderCache`
    (`is_updated[layer]` marks them done), as transformers' own encoder-decoders do. No rotary
    positions here: source and target positions are not on one axis.
    """

    def __init__(self, config: HftkConfig, layer_idx: int) -> None:
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.is_causal = False
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.scaling = self.head_dim**-0.5
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.attention_bias)
        self.kv = nn.Linear(config.hidden_size, 2 * config.hidden_size, bias=config.attention_bias)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.attention_bias)
        self.attention_dropout = config.attention_probs_dropout_prob

    def forward(
        self,
        x: torch.Tensor,
        encoder_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        past_key_values: EncoderDecoderCache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length, _ = x.shape
        q = self.q_proj(x).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        if past_key_values is not None and past_key_values.is_updated.get(self.layer_idx):
            layer = past_key_values.cross_attention_cache.layers[self.layer_idx]
            k, v = layer.keys, layer.values
        else:
            kv = self.kv(encoder_states).view(batch, encoder_states.shape[1], 2, self.num_heads, self.head_dim)
            k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
            if past_key_values is not None:
                k, v = past_key_values.cross_attention_cache.update(k, v, self.layer_idx)
                past_key_values.is_updated[self.layer_idx] = True
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        out, weights = attention(
            self,
            q,
            k,
            v,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        return self.out_proj(out.reshape(batch, length, -1)), weights


class FeedForward(nn.Module):
    """Position-wise MLP: act(x W_up) W_down, or the gated variant act(x W_gate) * (x W_up) W_down."""

    def __init__(self, config: HftkConfig) -> None:
        super().__init__()
        self.gated = config.gated_ffn
        up_features = config.intermediate_size * (2 if self.gated else 1)
        self.up_proj = nn.Linear(config.hidden_size, up_features, bias=config.mlp_bias)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)
        self.act = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up_proj(x)
        if self.gated:
            gate, h = h.chunk(2, dim=-1)
            return self.down_proj(self.act(gate) * h)
        return self.down_proj(self.act(h))


class ResidualLayer(GradientCheckpointingLayer):
    """A Transformer layer's one way to wrap a sublayer f in a residual:

    pre-LN (default): x + f(norm(x)), stable at high learning rates;
    post-LN (BERT):   norm(x + f(x)).

    A `GradientCheckpointingLayer`: `model.gradient_checkpointing_enable()` recomputes each
    layer in the backward pass instead of keeping its activations (the hidden state must be
    passed positionally, everything else by keyword).
    """

    pre_norm: bool
    dropout: nn.Dropout

    def residual(self, x: torch.Tensor, norm: nn.Module, sublayer: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if self.pre_norm:
            return x + self.dropout(sublayer(norm(x)))
        return norm(x + self.dropout(sublayer(x)))


class Block(ResidualLayer):
    """One Transformer layer: attention then feed-forward, each wrapped in a residual (`ResidualLayer`)."""

    def __init__(self, config: HftkConfig, layer_idx: int, is_causal: bool) -> None:
        super().__init__()
        self.pre_norm = config.pre_norm
        self.attention_norm = make_norm(config)
        self.attention = SelfAttention(config, layer_idx, is_causal)
        self.mlp_norm = make_norm(config)
        self.mlp = FeedForward(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        past_key_values: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        x = self.residual(x, self.attention_norm, lambda h: self.attention(h, attention_mask, rotary, past_key_values, **kwargs)[0])
        return self.residual(x, self.mlp_norm, self.mlp)


class DecoderBlock(ResidualLayer):
    """A decoder layer of an encoder-decoder: causal self-attention, cross-attention to the
    encoder, feed-forward; each sublayer wrapped in a residual, pre-LN or post-LN as `Block`.

    `past_key_values` is an `EncoderDecoderCache`: its self-attention half grows by a token per
    step, its cross-attention half is filled once. Under gradient checkpointing the encoder's
    states must be positional (they need gradients through the recomputation).
    """

    def __init__(self, config: HftkConfig, layer_idx: int) -> None:
        super().__init__()
        self.pre_norm = config.pre_norm
        self.attention_norm = make_norm(config)
        self.attention = SelfAttention(config, layer_idx, is_causal=True)
        self.cross_attention_norm = make_norm(config)
        self.cross_attention = CrossAttention(config, layer_idx)
        self.mlp_norm = make_norm(config)
        self.mlp = FeedForward(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        x: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        past_key_values: EncoderDecoderCache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        self_cache = past_key_values.self_attention_cache if past_key_values is not None else None
        x = self.residual(
            x, self.attention_norm, lambda h: self.attention(h, attention_mask, rotary, self_cache, **kwargs)[0]
        )
        x = self.residual(
            x,
            self.cross_attention_norm,
            lambda h: self.cross_attention(h, encoder_hidden_states, encoder_attention_mask, past_key_values, **kwargs)[0],
        )
        return self.residual(x, self.mlp_norm, self.mlp)


# ---------------------------------------------------------------------------------------------
# The stack and the shared PreTrainedModel base
# ---------------------------------------------------------------------------------------------


class HftkPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the capabilities transformers checks for (SDPA, cache, ...).

    `hidden_states` and `attentions` are recorded by transformers' output-capturing hooks on
    the blocks and attention modules (`_can_record_outputs`), so `output_hidden_states` /
    `output_attentions` work from the call or from the config, as in transformers' own models.
    """

    config: HftkConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    _no_split_modules = ["Block"]
    _can_record_outputs = {"hidden_states": Block, "attentions": SelfAttention}
    # Every Auto class of the family, written into each saved config so that a folder saved
    # from any head loads with all of them (AutoModel from a ForMaskedLM folder, say).
    _family_auto_map: dict[str, str] = {}

    def save_pretrained(self, save_directory, *args, **kwargs):
        self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **self._family_auto_map}
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, RotaryEmbedding):
            head_dim = module.inv_freq.numel() * 2
            base = self.config.rope_base
            module.inv_freq.copy_(1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)))
        elif isinstance(module, Embeddings) and module.position_embedding_type == "sinusoidal":
            module.sinusoidal.copy_(sinusoidal_table(*module.sinusoidal.shape))


class HftkTransformer(nn.Module):
    """Embeddings, a stack of blocks and (pre-LN) a final norm: the body of every hftk model."""

    def __init__(self, config: HftkConfig, is_causal: bool) -> None:
        super().__init__()
        self.config = config
        self.is_causal = is_causal
        self.embeddings = Embeddings(config)
        width = embedding_width(config)
        self.embeddings_project = nn.Linear(width, config.hidden_size) if width != config.hidden_size else None
        self.rotary = (
            RotaryEmbedding(config.head_dim, config.rope_base) if config.position_embedding_type == "rope" else None
        )
        self.layers = nn.ModuleList(Block(config, i, is_causal) for i in range(config.num_hidden_layers))
        self.final_norm = make_norm(config) if config.pre_norm else None

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds")
        reference = input_ids if input_ids is not None else inputs_embeds
        batch, length = reference.shape[:2]

        use_cache = self.is_causal and (use_cache if use_cache is not None else self.config.use_cache)
        use_cache = use_cache and not replays_in_backward(self.layers)
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=self.config)
        if not use_cache:
            past_key_values = None
        past_length = past_key_values.get_seq_length() if past_key_values is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past_length, past_length + length, device=reference.device)[None]

        x = self.embeddings(input_ids, inputs_embeds, position_ids, token_type_ids)
        if self.embeddings_project is not None:
            x = self.embeddings_project(x)
        rotary = self.rotary(position_ids, torch.float32) if self.rotary is not None else None
        if self.is_causal:
            mask = causal_mask(self.config, x, attention_mask, past_key_values, position_ids)
        else:
            mask = create_bidirectional_mask(config=self.config, inputs_embeds=x, attention_mask=attention_mask)

        for block in self.layers:
            x = block(x, attention_mask=mask, rotary=rotary, past_key_values=past_key_values, **kwargs)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return BaseModelOutputWithPast(last_hidden_state=x, **cache_field(past_key_values))


class LMPredictionHead(nn.Module):
    """BERT's MLM head: dense + activation + norm, then the (tied) vocabulary decoder with a bias.

    The dense layer maps to the embeddings' width, so the decoder ties to them when
    `embedding_size` differs from `hidden_size` (ELECTRA's generator head does the same).
    """

    def __init__(self, config: HftkConfig) -> None:
        super().__init__()
        width = embedding_width(config)
        self.transform = nn.Linear(config.hidden_size, width)
        self.act = ACT2FN[config.hidden_act]
        self.norm = make_norm(config, width)
        self.decoder = nn.Linear(width, config.vocab_size)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What the decoder reads: the fused loss applies the decoder itself, chunk by chunk."""
        return self.norm(self.act(self.transform(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.features(x))


# ---------------------------------------------------------------------------------------------
# Classification heads' shared pieces
# ---------------------------------------------------------------------------------------------


def classifier_dropout(config: HftkConfig) -> float:
    return config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob


def sequence_classification_loss(model: PreTrainedModel, logits: torch.Tensor, labels: torch.Tensor, **kwargs):
    """Regression, single-label or multi-label loss by `config.problem_type`, as transformers does."""
    config = model.config
    if config.problem_type is None:
        if config.num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype))
    if config.problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    return F.cross_entropy(logits.view(-1, config.num_labels).float(), labels.view(-1))
