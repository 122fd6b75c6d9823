"""hftk_gpt: a causal Transformer decoder that generates with a KV cache.

Self-contained on purpose: `save_pretrained` copies this file next to the weights, so it
may import only torch/transformers and its sibling files (relative imports).
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin
from transformers.cache_utils import Cache
from transformers.modeling_outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    SequenceClassifierOutputWithPast,
)
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .configuration_hftk import HftkGptConfig
from .cache_compat_hftk import cache_field, output_cache, take_cache
from .modeling_hftk import (
    HftkPreTrainedModel,
    HftkTransformer,
    classifier_dropout,
    sequence_classification_loss,
)
from .loss_hftk import linear_cross_entropy, use_fused_lm_loss


class HftkGptPreTrainedModel(HftkPreTrainedModel):
    config_class = HftkGptConfig
    config: HftkGptConfig
    _family_auto_map = {
        "AutoConfig": "configuration_hftk.HftkGptConfig",
        "AutoModel": "modeling_hftk_gpt.HftkGptModel",
        "AutoModelForCausalLM": "modeling_hftk_gpt.HftkGptForCausalLM",
        "AutoModelForSequenceClassification": "modeling_hftk_gpt.HftkGptForSequenceClassification",
    }


class HftkGptModel(HftkGptPreTrainedModel):
    """The bare decoder: causal token states and the updated KV cache."""

    def __init__(self, config: HftkGptConfig) -> None:
        super().__init__(config)
        self.decoder = HftkTransformer(config, is_causal=True)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.decoder.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.decoder.embeddings.word_embeddings = value

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPast:
        kwargs.pop("token_type_ids", None)
        cache = take_cache(cache, kwargs, type(self).__name__)
        return self.decoder(
            input_ids,
            attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            past_key_values=cache,
            use_cache=use_cache,
            **kwargs,
        )


class HftkGptForCausalLM(HftkGptPreTrainedModel, GenerationMixin):
    """Next-token prediction; `labels` are the inputs themselves (the shift happens inside),
    or `shift_labels` are the targets already aligned with the positions (what sequence- and
    context-parallel training hands the model: the shift must happen before sharding).

    Training with labels and `config.fused_lm_loss` returns the loss and `logits=None`.

    Decoding a few sequences eagerly without grad reads the vocabulary projection from a
    transposed copy of its weight, made on first use and remade whenever the weight changes:
    on CPU a (1, hidden) x (hidden, vocab) product runs about twice as fast as the (vocab,
    hidden) layout that nn.Linear and the tied embedding use, and it is most of a decoding
    step. Under torch.compile / torch.export the plain projection is traced instead (the
    copy is eager-only state; the compiler picks its own matmul layout).
    """

    _tied_weights_keys = {"lm_head.weight": "model.decoder.embeddings.word_embeddings.weight"}
    _decode_max_rows = 16  # batched decoding; from about 64 rows on both layouts are equally fast

    def __init__(self, config: HftkGptConfig) -> None:
        super().__init__(config)
        self.model = HftkGptModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self._decode_weight: torch.Tensor | None = None
        self._decode_weight_key: tuple | None = None
        self.post_init()

    def _project(self, hidden: torch.Tensor) -> torch.Tensor:
        """`self.lm_head(hidden)`, laid out for the few rows of a decoding step.

        `F.linear` on a handful of rows runs a GEMM with a tiny M over the (vocab, hidden)
        weight, several times slower than the memory-bound product it is on CPU. One row (greedy,
        batch 1) multiplies by a cached transposed copy (a GEMV); 2-16 rows (beams, small
        batches) compute weight @ hidden.T, a GEMM with the vocabulary as M: 2-4x faster than
        either layout at 2-16 rows on this CPU (benchmarks/PROFILE.md, "Decoding").
        """
        weight = self.lm_head.weight
        rows = hidden.numel() // hidden.shape[-1]
        if (
            not isinstance(weight, torch.Tensor)  # a quantized Linear (`hftk quantize`): packed int8, its own kernel
            or torch.compiler.is_compiling()
            or torch.is_grad_enabled()
            or rows > self._decode_max_rows
            or torch.is_autocast_enabled(hidden.device.type)
            or hidden.dtype != weight.dtype
        ):
            return self.lm_head(hidden)
        if rows > 1:
            flat = hidden.reshape(rows, hidden.shape[-1])
            logits = (weight @ flat.t()).t().contiguous().view(*hidden.shape[:-1], weight.shape[0])
            return logits + self.lm_head.bias if self.lm_head.bias is not None else logits
        key = (weight.data_ptr(), weight._version, weight.dtype, weight.device)
        if self._decode_weight_key != key:
            self._decode_weight = weight.detach().t().contiguous()
            self._decode_weight_key = key
        logits = torch.matmul(hidden, self._decode_weight)
        return logits + self.lm_head.bias if self.lm_head.bias is not None else logits

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        num_items_in_batch: torch.Tensor | int | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CausalLMOutputWithPast:
        # `shift_labels` comes through **kwargs, as in transformers' own causal LMs: a named
        # parameter would make Trainer count it among the label columns (any name with "label")
        # and, missing from the batch, evaluate without a loss.
        shift_labels = kwargs.pop("shift_labels", None)
        cache = take_cache(cache, kwargs, type(self).__name__)
        out = self.model(
            input_ids, attention_mask, position_ids, cache, inputs_embeds, use_cache=use_cache, **kwargs
        )
        hidden = out.last_hidden_state
        if shift_labels is not None and labels is None:
            labels = shift_labels  # only the targets matter below; `labels` just turns the loss on
        if use_fused_lm_loss(self, labels):
            # position t predicts token t + 1, unless the caller aligned the targets already
            shifted = shift_labels if shift_labels is not None else F.pad(labels, (0, 1), value=-100)[..., 1:]
            loss = linear_cross_entropy(hidden, self.lm_head.weight, self.lm_head.bias, shifted, num_items_in_batch)
            return CausalLMOutputWithPast(
                loss=loss, **cache_field(output_cache(out)), hidden_states=out.hidden_states, attentions=out.attentions
            )
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden = hidden[:, -logits_to_keep:]
        elif isinstance(logits_to_keep, torch.Tensor):
            hidden = hidden[:, logits_to_keep]
        logits = self._project(hidden)
        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits,
                labels,
                vocab_size=self.config.vocab_size,
                num_items_in_batch=num_items_in_batch,
                shift_labels=shift_labels.contiguous() if shift_labels is not None else None,  # it .view()s them
            )
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            **cache_field(output_cache(out)),
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )


class HftkGptForSequenceClassification(HftkGptPreTrainedModel):
    """Classification or regression from the last non-padding token (the only one that saw everything)."""

    def __init__(self, config: HftkGptConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = HftkGptModel(config)
        self.dropout = nn.Dropout(classifier_dropout(config))
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutputWithPast:
        kwargs.pop("num_items_in_batch", None)
        kwargs.pop("past_key_values", None), kwargs.pop("cache", None)
        out = self.model(input_ids, attention_mask, position_ids, inputs_embeds=inputs_embeds, use_cache=False, **kwargs)
        hidden = out.last_hidden_state
        batch, length = hidden.shape[:2]
        if attention_mask is not None:
            # Last attended position, right or left padding alike.
            positions = torch.arange(length, device=hidden.device)
            last = (positions * attention_mask.to(positions.dtype)).argmax(-1)
        elif input_ids is not None and self.config.pad_token_id is not None:
            not_pad = (input_ids != self.config.pad_token_id).int()
            last = (torch.arange(length, device=hidden.device) * not_pad).argmax(-1)
        else:
            last = torch.full((batch,), length - 1, device=hidden.device)
        logits = self.score(self.dropout(hidden[torch.arange(batch, device=hidden.device), last]))
        loss = sequence_classification_loss(self, logits, labels) if labels is not None else None
        return SequenceClassifierOutputWithPast(
            loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions
        )


__all__ = ["HftkGptPreTrainedModel", "HftkGptModel", "HftkGptForCausalLM", "HftkGptForSequenceClassification"]
