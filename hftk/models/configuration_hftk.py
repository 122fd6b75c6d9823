"""Configurations of hftk's model types: the encoder `hftk_bert`, the decoder `hftk_gpt` and the
encoder-decoder `hftk_seq2seq`.

Self-contained on purpose: `save_pretrained` copies this file next to the weights, so it
may import only torch/transformers and nothing else from hftk.
"""

from transformers import PreTrainedConfig

POSITION_EMBEDDING_TYPES = ("sinusoidal", "learned", "rope")
NORM_TYPES = ("layernorm", "rmsnorm")
CLASSIFIER_POOLINGS = ("cls", "mean")


class HftkConfig(PreTrainedConfig):
    """Fields shared by the encoder and the decoder.

    Defaults follow what makes small models train fast (pre-LN, no biases in attention
    and feed-forward, tied embeddings); `hftk convert` sets the fields that reproduce
    BERT (post-LN, biases, token types) and GPT-2 (biases, tanh GELU) exactly.

    `fused_lm_loss`: when a language-model head trains with labels (train mode, grad enabled),
    compute the loss chunk by chunk from the hidden states and return `logits=None`; the
    (tokens, vocab) logits are most of the step's memory traffic. Eval mode returns logits.

    `embedding_norm`: a LayerNorm on the embeddings (BERT's, ModernBERT's). hftk's pretraining
    recipes turn it on: in a pre-LN body the embeddings, drawn at std 0.02, are otherwise soon
    swamped by what the first block adds, and the residual stream loses which token it holds.
    """

    vocab_size: int = 30522
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    hidden_act: str = "gelu"
    gated_ffn: bool = False
    norm_type: str = "layernorm"
    norm_eps: float = 1e-12
    pre_norm: bool = True
    embedding_norm: bool = False
    position_embedding_type: str = "learned"
    rope_base: float = 10000.0
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    attention_bias: bool = False
    mlp_bias: bool = False
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    classifier_dropout: float | None = None
    initializer_range: float = 0.02
    fused_lm_loss: bool = True
    tie_word_embeddings: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if self.position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise ValueError(
                f"position_embedding_type must be one of {POSITION_EMBEDDING_TYPES}, "
                f"got {self.position_embedding_type!r}"
            )
        if self.norm_type not in NORM_TYPES:
            raise ValueError(f"norm_type must be one of {NORM_TYPES}, got {self.norm_type!r}")
        if self.position_embedding_type == "rope" and (self.hidden_size // self.num_attention_heads) % 2:
            raise ValueError("rope needs an even head size (hidden_size / num_attention_heads)")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


class HftkBertConfig(HftkConfig):
    """Bidirectional encoder, trained with masked language modelling.

    `sparse_prediction`: in train mode with labels, run the vocabulary decoder only on the
    masked positions and return only their logits (cramming's trick; in small models the
    decoder dominates FLOPs). Off by default, as ModernBERT's field of the same name: eval
    mode always returns (B, T, vocab) logits. hftk's pretraining loop asks for it per call.
    `use_pooler`: a dense+tanh layer on the first token, as BERT's sequence classifier uses.
    `classifier_pooling`: what the sequence classifier reads: `cls` (the first token, BERT's
    way) or `mean` (the mean of the non-padding tokens; an MLM-only encoder never trains its
    first token for a sentence-level task, while every token state is pretrained).
    `embedding_size`: the token embeddings' width when it differs from `hidden_size` (None:
    the same). ELECTRA's narrow generator shares the discriminator's embeddings this way:
    they are projected to its width, and its MLM head maps back to them for the tied decoder.
    """

    model_type = "hftk_bert"

    sparse_prediction: bool = False
    use_pooler: bool = True
    classifier_pooling: str = "cls"
    embedding_size: int | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.embedding_size is not None and self.embedding_size < 1:
            raise ValueError(f"embedding_size must be positive or None, got {self.embedding_size}")
        if self.classifier_pooling not in CLASSIFIER_POOLINGS:
            raise ValueError(f"classifier_pooling must be one of {CLASSIFIER_POOLINGS}, got {self.classifier_pooling!r}")


class HftkGptConfig(HftkConfig):
    """Causal decoder, trained with next-token prediction; generates with a KV cache."""

    model_type = "hftk_gpt"

    vocab_size: int = 50257
    max_position_embeddings: int = 1024
    type_vocab_size: int = 0
    norm_eps: float = 1e-5
    position_embedding_type: str = "rope"
    pad_token_id: int | None = None
    bos_token_id: int | None = 50256
    eos_token_id: int | list[int] | None = 50256
    use_cache: bool = True


class HftkSeq2SeqConfig(HftkConfig):
    """Encoder-decoder joined by cross-attention ("Attention Is All You Need"): translation, summarization.

    Defaults follow the paper where it matters for the architecture: sinusoidal positions and
    token embeddings scaled by sqrt(hidden_size) (`scale_embedding`); the family's pre-LN default
    stays (post-LN, as the paper and BART/Marian, is `pre_norm=False`). `num_hidden_layers` is
    the depth of the encoder and of the decoder alike.

    `share_embeddings`: one token table for source and target (a shared vocabulary, as the
    paper's byte-pair vocabulary); with False each side has its own table of `vocab_size` rows.
    `tie_word_embeddings`: the output projection is the decoder's token table.
    `lm_head_bias`: a bias on the output projection (BART's and Marian's `final_logits_bias`).
    `label_smoothing`: of the loss the model returns (the paper trains with 0.1).
    `decoder_start_token_id`: what the decoder reads first; labels shift right behind it.
    """

    model_type = "hftk_seq2seq"
    keys_to_ignore_at_inference = ["past_key_values"]

    vocab_size: int = 32000
    type_vocab_size: int = 0
    norm_eps: float = 1e-5
    position_embedding_type: str = "sinusoidal"
    max_position_embeddings: int = 1024
    scale_embedding: bool = True
    share_embeddings: bool = True
    lm_head_bias: bool = False
    label_smoothing: float = 0.0
    is_encoder_decoder: bool = True
    use_cache: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    decoder_start_token_id: int | None = 1

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


__all__ = ["HftkConfig", "HftkBertConfig", "HftkGptConfig", "HftkSeq2SeqConfig"]
