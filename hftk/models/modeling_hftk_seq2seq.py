"""hftk_seq2seq: the encoder-decoder Transformer of "Attention Is All You Need".

The encoder is hftk_bert's stack, the decoder hftk_gpt's with cross-attention to the
encoder in every layer (`DecoderBlock`); both reuse the family's embeddings, attention,
feed-forward and norms, so positions (sinusoidal / learned / RoPE), pre/post-LN, norms and
biases are the same options as in the other two types. Generation uses transformers'
`EncoderDecoderCache`: self-attention keys/values grow per step, cross-attention keys/values
are computed once from the encoder's output.

Self-contained on purpose: `save_pretrained` copies this file next to the weights, so it
may import only torch/transformers and its sibling files (relative imports).
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
)
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .configuration_hftk import HftkSeq2SeqConfig
from .modeling_hftk_gpt import HftkGptForCausalLM
from .pipeline_hftk_seq2seq import CUSTOM_PIPELINES
from .cache_compat_hftk import cache_field, causal_mask, output_cache, replays_in_backward, take_cache
from .modeling_hftk import (
    Block,
    CrossAttention,
    DecoderBlock,
    Embeddings,
    HftkPreTrainedModel,
    HftkTransformer,
    RotaryEmbedding,
    SelfAttention,
    make_norm,
)
from .loss_hftk import linear_cross_entropy, use_fused_lm_loss


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int | None, decoder_start_token_id: int | None) -> torch.Tensor:
    """Decoder inputs for teacher forcing: the start token, then the labels without their last
    token; ignored label positions (-100) become padding."""
    if decoder_start_token_id is None:
        raise ValueError("config.decoder_start_token_id must be set to make decoder inputs from labels")
    if pad_token_id is None:
        raise ValueError("config.pad_token_id must be set to make decoder inputs from labels")
    shifted = labels.new_full(labels.shape, decoder_start_token_id)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == -100, pad_token_id)


class HftkSeq2SeqPreTrainedModel(HftkPreTrainedModel):
    config_class = HftkSeq2SeqConfig
    config: HftkSeq2SeqConfig
    _no_split_modules = ["Block", "DecoderBlock"]
    _skip_keys_device_placement = ["past_key_values", "cache"]
    _can_record_outputs = None  # the encoder and the decoder record their own
    _family_auto_map = {
        "AutoConfig": "configuration_hftk.HftkSeq2SeqConfig",
        "AutoModel": "modeling_hftk_seq2seq.HftkSeq2SeqModel",
        "AutoModelForSeq2SeqLM": "modeling_hftk_seq2seq.HftkSeq2SeqForConditionalGeneration",
    }

    def save_pretrained(self, save_directory, *args, **kwargs):
        # transformers 5 removed the translation/summarization/text2text pipelines; the config names
        # hftk's (copied beside this file, as a relative import) for `pipeline(task, trust_remote_code=True)`.
        self.config.custom_pipelines = CUSTOM_PIPELINES
        return super().save_pretrained(save_directory, *args, **kwargs)

    def get_expanded_tied_weights_keys(self, all_submodels: bool = False) -> dict:
        """Two independent ties: source/target token tables (`share_embeddings`) and the output
        projection (`tie_word_embeddings`). transformers gates every tie on the latter, which
        would untie a shared vocabulary whenever the output projection is untied."""
        if all_submodels:
            return super().get_expanded_tied_weights_keys(all_submodels=True)
        ties = dict(self._tied_weights_keys or {})
        if not self.config.tie_word_embeddings:
            ties.pop("lm_head.weight", None)
        if not self.config.share_embeddings:
            ties.pop("encoder.embeddings.word_embeddings.weight", None)
        return ties


class HftkSeq2SeqEncoder(HftkSeq2SeqPreTrainedModel):
    """The encoder: hftk's bidirectional stack (the same forward as hftk_bert's), recording its
    own hidden states and attentions."""

    _can_record_outputs = {"hidden_states": Block, "attentions": SelfAttention}

    def __init__(self, config: HftkSeq2SeqConfig) -> None:
        super().__init__(config)
        self.is_causal = False
        self.embeddings = Embeddings(config)
        self.embeddings_project = None  # HftkTransformer.forward's width adapter (only ELECTRA's narrow generator has one)
        self.rotary = (
            RotaryEmbedding(config.head_dim, config.rope_base) if config.position_embedding_type == "rope" else None
        )
        self.layers = nn.ModuleList(Block(config, i, is_causal=False) for i in range(config.num_hidden_layers))
        self.final_norm = make_norm(config) if config.pre_norm else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    @capture_outputs
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        kwargs.pop("token_type_ids", None)
        out = HftkTransformer.forward(
            self, input_ids, attention_mask, None, position_ids, inputs_embeds, use_cache=False, **kwargs
        )
        return BaseModelOutput(last_hidden_state=out.last_hidden_state)


class HftkSeq2SeqDecoder(HftkSeq2SeqPreTrainedModel):
    """The decoder: causal self-attention, cross-attention to the encoder, feed-forward."""

    _can_record_outputs = {"hidden_states": DecoderBlock, "attentions": SelfAttention, "cross_attentions": CrossAttention}

    def __init__(self, config: HftkSeq2SeqConfig) -> None:
        super().__init__(config)
        self.embeddings = Embeddings(config)
        self.rotary = (
            RotaryEmbedding(config.head_dim, config.rope_base) if config.position_embedding_type == "rope" else None
        )
        self.layers = nn.ModuleList(DecoderBlock(config, i) for i in range(config.num_hidden_layers))
        self.final_norm = make_norm(config) if config.pre_norm else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of decoder_input_ids or decoder_inputs_embeds")
        if encoder_hidden_states is None:
            raise ValueError("The decoder needs encoder_hidden_states (pass input_ids or encoder_outputs)")
        reference = input_ids if input_ids is not None else inputs_embeds
        length = reference.shape[1]

        use_cache = use_cache and not replays_in_backward(self.layers)
        if use_cache and past_key_values is None:
            past_key_values = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        if not use_cache:
            past_key_values = None
        self_cache = past_key_values.self_attention_cache if past_key_values is not None else None
        past_length = self_cache.get_seq_length() if self_cache is not None else 0
        if position_ids is None:
            # arange(length) + past, not arange(past, past + length): under compile with a static cache
            # the past length is data-dependent, and only this form traces with a static shape
            position_ids = (torch.arange(length, device=reference.device) + past_length)[None]

        x = self.embeddings(input_ids, inputs_embeds, position_ids, None)
        rotary = self.rotary(position_ids, torch.float32) if self.rotary is not None else None
        mask = causal_mask(self.config, x, attention_mask, self_cache, position_ids)
        cross_mask = create_bidirectional_mask(
            config=self.config,
            inputs_embeds=x,
            attention_mask=encoder_attention_mask,
            encoder_hidden_states=encoder_hidden_states,
        )
        for block in self.layers:
            x = block(
                x,
                encoder_hidden_states,  # positional: gradient checkpointing passes gradients to it
                attention_mask=mask,
                encoder_attention_mask=cross_mask,
                rotary=rotary,
                past_key_values=past_key_values,
                **kwargs,
            )
        if self.final_norm is not None:
            x = self.final_norm(x)
        return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=x, **cache_field(past_key_values))


class HftkSeq2SeqModel(HftkSeq2SeqPreTrainedModel):
    """The bare encoder-decoder: the decoder's token states given a source.

    Without `decoder_input_ids` the source itself, shifted right, is the decoder input (as
    BART does, for denoising pretraining).
    """

    _tied_weights_keys = {"encoder.embeddings.word_embeddings.weight": "decoder.embeddings.word_embeddings.weight"}

    def __init__(self, config: HftkSeq2SeqConfig) -> None:
        super().__init__(config)
        self.encoder = HftkSeq2SeqEncoder(config)
        self.decoder = HftkSeq2SeqDecoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.decoder.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.decoder.embeddings.word_embeddings = value
        if self.config.share_embeddings:
            self.encoder.embeddings.word_embeddings = value

    def get_encoder(self, modality: str | None = None) -> HftkSeq2SeqEncoder:
        return self.encoder

    def get_decoder(self) -> HftkSeq2SeqDecoder:
        return self.decoder

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        decoder_position_ids: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqModelOutput:
        cache = take_cache(cache, kwargs, type(self).__name__)
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            if input_ids is None:
                raise ValueError("Pass decoder_input_ids (or decoder_inputs_embeds), or input_ids to shift right")
            decoder_input_ids = shift_tokens_right(input_ids, self.config.pad_token_id, self.config.decoder_start_token_id)
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(
                last_hidden_state=encoder_outputs[0],
                hidden_states=encoder_outputs[1] if len(encoder_outputs) > 1 else None,
                attentions=encoder_outputs[2] if len(encoder_outputs) > 2 else None,
            )
        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            position_ids=decoder_position_ids,
            past_key_values=cache,
            inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            **cache_field(output_cache(decoder_outputs)),
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


class HftkSeq2SeqForConditionalGeneration(HftkSeq2SeqPreTrainedModel, GenerationMixin):
    """Target tokens given a source: translation, summarization, denoising.

    `labels` are the target tokens (-100 = ignore); the decoder inputs are made from them by
    `shift_tokens_right` unless given. The loss is the mean cross-entropy over the labelled
    positions, with `config.label_smoothing`. Training with labels (train mode, grad enabled,
    `config.fused_lm_loss`, no label smoothing) computes the loss chunk by chunk from the
    hidden states and returns `logits=None`, as hftk_gpt does.
    """

    _tied_weights_keys = {"lm_head.weight": "model.decoder.embeddings.word_embeddings.weight"}
    # Decoding a few rows eagerly without grad reads the vocabulary projection from a transposed
    # copy of its weight, exactly as hftk_gpt does (see HftkGptForCausalLM; about 2x faster on CPU).
    _decode_max_rows = HftkGptForCausalLM._decode_max_rows
    _project = HftkGptForCausalLM._project

    def __init__(self, config: HftkSeq2SeqConfig) -> None:
        super().__init__(config)
        self.model = HftkSeq2SeqModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=config.lm_head_bias)
        self._decode_weight: torch.Tensor | None = None
        self._decode_weight_key: tuple | None = None
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def get_encoder(self, modality: str | None = None) -> HftkSeq2SeqEncoder:
        return self.model.encoder

    def get_decoder(self) -> HftkSeq2SeqDecoder:
        return self.model.decoder

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """What DataCollatorForSeq2Seq calls to put decoder inputs in the batch."""
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if module is self and self.lm_head.bias is not None:
            nn.init.zeros_(self.lm_head.bias)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        decoder_position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        num_items_in_batch: torch.Tensor | int | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqLMOutput:
        cache = take_cache(cache, kwargs, type(self).__name__)
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        out = self.model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=cache,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            decoder_position_ids=decoder_position_ids,
            use_cache=use_cache,
            **kwargs,
        )
        hidden = out.last_hidden_state
        logits = loss = None
        if use_fused_lm_loss(self, labels) and self.config.label_smoothing == 0.0:
            loss = linear_cross_entropy(hidden, self.lm_head.weight, self.lm_head.bias, labels, num_items_in_batch)
        else:
            if isinstance(logits_to_keep, int) and logits_to_keep > 0:
                hidden = hidden[:, -logits_to_keep:]
            elif isinstance(logits_to_keep, torch.Tensor):
                hidden = hidden[:, logits_to_keep]
            logits = self._project(hidden)
            if labels is not None:
                loss = self._loss(logits, labels, num_items_in_batch)
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            **cache_field(output_cache(out)),
            decoder_hidden_states=out.decoder_hidden_states,
            decoder_attentions=out.decoder_attentions,
            cross_attentions=out.cross_attentions,
            encoder_last_hidden_state=out.encoder_last_hidden_state,
            encoder_hidden_states=out.encoder_hidden_states,
            encoder_attentions=out.encoder_attentions,
        )

    def _loss(
        self, logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None
    ) -> torch.Tensor:
        """Cross-entropy in float32 over the labelled positions (labels are already aligned with
        the decoder's positions: no shift), averaged over them or over `num_items_in_batch`."""
        labels = labels.to(logits.device)
        reduction = "sum" if num_items_in_batch is not None else "mean"
        loss = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]),
            labels.reshape(-1),
            ignore_index=-100,
            reduction=reduction,
            label_smoothing=self.config.label_smoothing,
        )
        if num_items_in_batch is not None:
            loss = loss / num_items_in_batch
        return loss


__all__ = [
    "HftkSeq2SeqPreTrainedModel",
    "HftkSeq2SeqModel",
    "HftkSeq2SeqForConditionalGeneration",
    "shift_tokens_right",
]
