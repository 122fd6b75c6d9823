"""The Transformer shared by hftk's encoder and decoder: embeddings, attention, feed-forward, blocks.

Self-contained on purpose: `save_pretrained` copies this file (and the files that import
it) next to the weights, so it may import only torch/transformers and nothing else from hftk.

Shapes: B batch, T query length, S key length (T + cached tokens), H heads, D head size.
"""

import inspect
import math
from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs

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
    reference, or any function registered in transformers' `ALL_ATTENTION_FUNCTIONS`).
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
        upcast = q.dtype == torch.bfloat16 and self.config._attn_implementation == "sdpa" and _slow_bf16_sdpa(q.device)
        if upcast:
            # Without AMX, PyTorch's bf16 flash-attention kernel (forward + backward) is ~1.4x slower
            # than the float32 one plus these casts; autocast (which would cast SDPA's inputs back to
            # bf16) is off for the call, and out_proj casts the output back (benchmarks/PROFILE.md).
            q, k, v = q.float(), k.float(), v.float()
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        with torch.autocast(q.device.type, enabled=False) if upcast else nullcontext():
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
        return self.out_proj(out.reshape(batch, length, -1).to(qkv.dtype)), weights


# Read once: a plain bool is free per call and constant under torch.compile.
_CPU_HAS_AMX = bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def _slow_bf16_sdpa(device: torch.device) -> bool:
    """A CPU without AMX tiles: bf16 matmuls there run on AVX-512, where float32 attention wins."""
    return device.type == "cpu" and not _CPU_HAS_AMX


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


class Block(GradientCheckpointingLayer):
    """One Transformer layer: attention then feed-forward, each wrapped in a residual.

    pre-LN (default): x + f(norm(x)), stable at high learning rates;
    post-LN (BERT):   norm(x + f(x)).

    A `GradientCheckpointingLayer`: `model.gradient_checkpointing_enable()` recomputes each
    block in the backward pass instead of keeping its activations (the hidden state must be
    passed positionally, everything else by keyword).
    """

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
        if self.pre_norm:
            attended, _ = self.attention(self.attention_norm(x), attention_mask, rotary, past_key_values, **kwargs)
            x = x + self.dropout(attended)
            return x + self.dropout(self.mlp(self.mlp_norm(x)))
        attended, _ = self.attention(x, attention_mask, rotary, past_key_values, **kwargs)
        x = self.attention_norm(x + self.dropout(attended))
        return self.mlp_norm(x + self.dropout(self.mlp(x)))


class DecoderBlock(GradientCheckpointingLayer):
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

    def _residual(self, x: torch.Tensor, norm: nn.Module, sublayer: Callable) -> torch.Tensor:
        if self.pre_norm:
            return x + self.dropout(sublayer(norm(x)))
        return norm(x + self.dropout(sublayer(x)))

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
        x = self._residual(
            x, self.attention_norm, lambda h: self.attention(h, attention_mask, rotary, self_cache, **kwargs)[0]
        )
        x = self._residual(
            x,
            self.cross_attention_norm,
            lambda h: self.cross_attention(h, encoder_hidden_states, encoder_attention_mask, past_key_values, **kwargs)[0],
        )
        return self._residual(x, self.mlp_norm, self.mlp)


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
# Losses
# ---------------------------------------------------------------------------------------------


class _LinearCrossEntropy(torch.autograd.Function):
    """Sum of cross-entropies of `hidden @ weight.T + bias`, computed `chunk_rows` rows at a time.

    The (rows, vocab) logits never exist in full: each chunk's softmax turns into its gradient
    in place, in buffers allocated once (on CPU a fresh tensor of this size costs more in page
    faults than the softmax itself), and the gradients of hidden, weight and bias are complete
    when forward returns; backward only scales them. Under autocast the matmuls run in the
    autocast dtype, as nn.Linear would, and the softmax in float32, as transformers' LM losses
    upcast logits to.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, denominator, chunk_rows):
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
        accumulate = torch.promote_types(dtype, torch.float32)  # float32 softmax, or float64 if given
        with torch.autocast(device, enabled=False):
            h, w = hidden.to(dtype), weight.to(dtype)
            b = bias.to(dtype) if bias is not None else None
            rows, vocab = h.shape[0], w.shape[0]
            grad_h = torch.empty_like(hidden)
            mixed = dtype != accumulate
            # Mixed precision accumulates grad_w transposed, (hidden, vocab): that bf16 product is
            # about 1.4x faster on CPU than the (vocab, hidden) one; float32 is layout-neutral.
            grad_w = torch.zeros(weight.shape[::-1] if mixed else weight.shape, dtype=accumulate, device=weight.device)
            grad_b = torch.zeros(vocab, dtype=accumulate, device=weight.device) if bias is not None else None
            total = torch.zeros((), dtype=accumulate, device=hidden.device)
            buffer_rows = min(chunk_rows, rows)
            logits_buffer = torch.empty(buffer_rows, vocab, dtype=dtype, device=h.device)
            probs_buffer = torch.empty(buffer_rows, vocab, dtype=accumulate, device=h.device) if mixed else logits_buffer
            partial_w = torch.empty_like(grad_w, dtype=dtype) if mixed else None
            for start in range(0, rows, chunk_rows):
                h_chunk, y = h[start : start + chunk_rows], labels[start : start + chunk_rows]
                index = torch.arange(len(y), device=y.device)
                logits, probs = logits_buffer[: len(y)], probs_buffer[: len(y)]
                if b is None:
                    torch.mm(h_chunk, w.t(), out=logits)
                else:
                    torch.addmm(b, h_chunk, w.t(), out=logits)
                if mixed:
                    probs.copy_(logits)
                torch.ops.aten._softmax.out(probs, -1, False, out=probs)  # in place, row by row
                target = probs[index, y]
                loss = -target.log()
                underflow = target < 1e-30  # -log(p) lost to float32 underflow: take it from logsumexp
                if underflow.any():
                    rows_lost = F.linear(h_chunk[underflow], w, b).to(accumulate)  # rare: recompute those rows
                    loss[underflow] = rows_lost.logsumexp(-1) - rows_lost.gather(1, y[underflow, None]).squeeze(1)
                total += loss.sum()
                probs[index, y] = target - 1  # d(loss)/d(logits) = softmax - one_hot
                if grad_b is not None:
                    grad_b += probs.sum(0)
                grad = logits.copy_(probs) if mixed else probs
                if mixed:
                    grad_h[start : start + chunk_rows] = grad @ w
                    grad_w += torch.mm(h_chunk.t(), grad, out=partial_w)
                else:
                    torch.mm(grad, w, out=grad_h[start : start + chunk_rows])
                    grad_w.addmm_(grad.t(), h_chunk)
        grad_h.div_(denominator)
        grad_w = grad_w.t() if mixed else grad_w
        grad_w = grad_w.div_(denominator).to(weight.dtype).contiguous()
        grad_b = grad_b.div_(denominator).to(bias.dtype) if grad_b is not None else None
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        return total / denominator

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        grad_b = grad_b * grad_output if grad_b is not None else None
        return grad_h * grad_output, grad_w * grad_output, grad_b, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    num_items_in_batch: torch.Tensor | int | None = None,
    ignore_index: int = -100,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """`F.cross_entropy(F.linear(hidden, weight, bias), labels)` without materialising the logits.

    The LM head of a small model over a 30-50k vocabulary is most of a training step, and its
    (tokens, vocab) logits, their float32 copy and their gradient are gigabytes of memory
    traffic. Here rows with `ignore_index` are dropped first and the rest run in chunks; the
    mean is over the kept rows, or over `num_items_in_batch` (gradient accumulation) if given.
    """
    hidden = hidden.reshape(-1, hidden.shape[-1])
    labels = labels.reshape(-1).to(hidden.device)
    keep = labels != ignore_index
    hidden, labels = hidden[keep], labels[keep]
    denominator = num_items_in_batch if num_items_in_batch is not None else labels.numel()
    if torch.is_tensor(denominator):
        denominator = denominator.to(hidden.device, torch.float32)
    elif denominator == 0:
        denominator = float("nan")  # a mean over nothing, as F.cross_entropy gives
    if chunk_rows is None:
        chunk_rows = max(64, 2**25 // weight.shape[0])  # about 32M logits (128 MB in float32) per chunk
    return _LinearCrossEntropy.apply(hidden, weight, bias, labels, denominator, chunk_rows)


# transformers 5.24 renamed the KV cache `past_key_values` -> `cache` in create_causal_mask, the model
# outputs and the kwargs generate() passes; the old names still work there, with a deprecation
# warning. hftk runs on both sides of the rename, so it names the cache as the installed release does.
_MASK_CACHE_ARG = "cache" if "cache" in inspect.signature(create_causal_mask).parameters else "past_key_values"
_OUTPUT_CACHE_FIELD = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"


def causal_mask(
    config: HftkConfig, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None,
    cache: Cache | None, position_ids: torch.Tensor,
) -> torch.Tensor | None:
    """transformers' `create_causal_mask`, given the cache under the installed release's name for it."""
    return create_causal_mask(
        config=config, inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
        **{_MASK_CACHE_ARG: cache},
    )


def cache_field(cache: Cache | None) -> dict[str, Cache | None]:
    """The keyword a model output takes its cache under: `**cache_field(cache)`."""
    return {_OUTPUT_CACHE_FIELD: cache}


def replays_in_backward(layers: nn.ModuleList) -> bool:
    """Gradient checkpointing will rerun these blocks in the backward pass, and so write a KV cache twice.

    transformers' `GradientCheckpointingLayer` drops a cache it finds under its release's name for
    it (`cache` from 5.24 on), which is not the `past_key_values` hftk's blocks take; so with
    checkpointing on, the model builds no cache to begin with.
    """
    first = layers[0] if len(layers) else None
    return first is not None and first.gradient_checkpointing and first.training and torch.is_grad_enabled()


def take_cache(past_key_values: Cache | None, kwargs: dict) -> Cache | None:
    """The KV cache a caller passed, as `past_key_values` or as `cache` (generate() from 5.24 on).

    The signatures keep `past_key_values`: the name earlier releases pass and their common model
    tests look for.
    """
    cache = kwargs.pop("cache", None)
    return past_key_values if past_key_values is not None else cache


def output_cache(output: ModelOutput) -> Cache | None:
    """The KV cache of an output `cache_field` filled (5.24+ warns on reading `.past_key_values`)."""
    return output.get(_OUTPUT_CACHE_FIELD)


def use_fused_lm_loss(model: PreTrainedModel, labels: torch.Tensor | None) -> bool:
    """Training with labels: compute the LM loss from the hidden states and skip the logits."""
    return labels is not None and model.training and torch.is_grad_enabled() and model.config.fused_lm_loss


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
