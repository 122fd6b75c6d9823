"""hftk_bert: a bidirectional Transformer encoder with BERT's heads.

Self-contained on purpose: `save_pretrained` copies this file next to the weights, so it
may import only torch/transformers and its sibling files (relative imports).
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .configuration_hftk import HftkBertConfig
from .modeling_hftk import (
    HftkPreTrainedModel,
    HftkTransformer,
    LMPredictionHead,
    classifier_dropout,
    sequence_classification_loss,
)
from .loss_hftk import linear_cross_entropy, use_fused_lm_loss


class HftkBertPreTrainedModel(HftkPreTrainedModel):
    config_class = HftkBertConfig
    config: HftkBertConfig
    _family_auto_map = {
        "AutoConfig": "configuration_hftk.HftkBertConfig",
        "AutoModel": "modeling_hftk_bert.HftkBertModel",
        "AutoModelForMaskedLM": "modeling_hftk_bert.HftkBertForMaskedLM",
        "AutoModelForSequenceClassification": "modeling_hftk_bert.HftkBertForSequenceClassification",
        "AutoModelForTokenClassification": "modeling_hftk_bert.HftkBertForTokenClassification",
        "AutoModelForQuestionAnswering": "modeling_hftk_bert.HftkBertForQuestionAnswering",
        "AutoModelForPreTraining": "modeling_hftk_bert.HftkBertForPreTraining",
    }

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, LMPredictionHead):
            nn.init.zeros_(module.decoder.bias)


class HftkBertModel(HftkBertPreTrainedModel):
    """The bare encoder: contextual token states, plus a pooled first token if `use_pooler`."""

    def __init__(self, config: HftkBertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.encoder = HftkTransformer(config, is_causal=False)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if add_pooling_layer and config.use_pooler else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.encoder.embeddings.word_embeddings = value

    @capture_outputs
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        out = self.encoder(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs)
        pooled = torch.tanh(self.pooler(out.last_hidden_state[:, 0])) if self.pooler is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=out.last_hidden_state, pooler_output=pooled)


class HftkBertForMaskedLM(HftkBertPreTrainedModel):
    """Masked language modelling.

    `logits` are (B, T, vocab), as from any transformers MLM, unless sparse prediction is on:
    then, with `labels`, the vocabulary decoder runs only where `labels != -100` and `logits`
    holds those rows only, shape (num_masked, vocab); the loss equals the dense computation.
    Sparse prediction is on when `forward(..., sparse_prediction=True)` asks for it (hftk's
    pretraining loop does) or, in train mode only, when `config.sparse_prediction` is set
    (ModernBERT's field, off by default), so evaluation and `compute_metrics` always see
    (B, T, vocab). Training with labels and `config.fused_lm_loss` returns the loss and
    `logits=None` (only the masked rows reach the decoder there too).
    """

    _tied_weights_keys = {"head.decoder.weight": "model.encoder.embeddings.word_embeddings.weight"}

    def __init__(self, config: HftkBertConfig) -> None:
        super().__init__(config)
        self.model = HftkBertModel(config, add_pooling_layer=False)
        self.head = LMPredictionHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.head.decoder

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.head.decoder = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        sparse_prediction: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskedLMOutput:
        out = self.model(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs)
        hidden = out.last_hidden_state
        if use_fused_lm_loss(self, labels):
            selected = labels != -100  # only masked positions reach the head, sparse or not
            decoder = self.head.decoder
            loss = linear_cross_entropy(
                self.head.features(hidden[selected]), decoder.weight, decoder.bias, labels[selected], num_items_in_batch
            )
            return MaskedLMOutput(loss=loss, hidden_states=out.hidden_states, attentions=out.attentions)
        loss = None
        if sparse_prediction is None:
            sparse_prediction = self.training and self.config.sparse_prediction
        if labels is not None and sparse_prediction:
            selected = labels != -100
            logits = self.head(hidden[selected])
            labels = labels[selected]
        else:
            logits = self.head(hidden)
        if labels is not None:
            loss = self.loss_function(
                logits, labels, vocab_size=self.config.vocab_size, num_items_in_batch=num_items_in_batch
            )
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)


class HftkBertForSequenceClassification(HftkBertPreTrainedModel):
    """Classification or regression (`config.problem_type`) from the pooled first token or token mean."""

    def __init__(self, config: HftkBertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = HftkBertModel(config)
        self.dropout = nn.Dropout(classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        kwargs.pop("num_items_in_batch", None)
        out = self.model(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs)
        logits = self.classifier(self.dropout(self.pool(out, attention_mask)))
        loss = sequence_classification_loss(self, logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)

    def pool(self, out: BaseModelOutputWithPooling, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """The sentence vector: BERT's pooled first token, or the mean of the real tokens' states."""
        if self.config.classifier_pooling == "cls":
            return out.pooler_output if out.pooler_output is not None else out.last_hidden_state[:, 0]
        hidden = out.last_hidden_state
        if attention_mask is None:
            mean = hidden.mean(dim=1)
        else:
            weights = attention_mask[:, :, None].to(hidden.dtype)
            mean = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
        pooler = self.model.pooler
        return torch.tanh(pooler(mean)) if pooler is not None else mean


class HftkBertForTokenClassification(HftkBertPreTrainedModel):
    """One label per token (NER, POS tagging)."""

    def __init__(self, config: HftkBertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = HftkBertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> TokenClassifierOutput:
        out = self.model(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs)
        logits = self.classifier(self.dropout(out.last_hidden_state))
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, self.config, num_items_in_batch=num_items_in_batch)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)


class HftkBertForQuestionAnswering(HftkBertPreTrainedModel):
    """Extractive QA: start and end logits over the tokens."""

    def __init__(self, config: HftkBertConfig) -> None:
        super().__init__(config)
        self.model = HftkBertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> QuestionAnsweringModelOutput:
        kwargs.pop("num_items_in_batch", None)
        out = self.model(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs)
        start_logits, end_logits = self.qa_outputs(out.last_hidden_state).split(1, dim=-1)
        start_logits, end_logits = start_logits.squeeze(-1).contiguous(), end_logits.squeeze(-1).contiguous()
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = self.loss_function(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )


class HftkBertForPreTraining(HftkBertPreTrainedModel):
    """ELECTRA's discriminator: replaced-token detection, one logit per token (> 0: replaced).

    What `hftk pretrain` with `objective: electra` saves, as transformers' `ElectraForPreTraining`
    is for ELECTRA (`AutoModelForPreTraining`). Its body is the `model.*` every other head loads;
    `discriminator_head.*` is left out by them as an MLM folder's `head.*` is.
    `labels`: 1 replaced, 0 original, -100 ignored; the loss is the binary cross-entropy over
    the attended, labelled tokens, summed and divided by `num_items_in_batch` where given.
    """

    def __init__(self, config: HftkBertConfig) -> None:
        super().__init__(config)
        self.model = HftkBertModel(config, add_pooling_layer=False)
        self.discriminator_head = DiscriminatorHead(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> TokenClassifierOutput:
        out = self.model(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs)
        logits = self.discriminator_head(out.last_hidden_state)
        loss = None
        if labels is not None:
            counted = labels != -100
            if attention_mask is not None:
                counted &= attention_mask.bool()
            losses = F.binary_cross_entropy_with_logits(
                logits[counted].float(), labels[counted].float(), reduction="sum"
            )
            denominator = num_items_in_batch if num_items_in_batch is not None else counted.sum()
            loss = losses / denominator
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)


class DiscriminatorHead(nn.Module):
    """ELECTRA's discriminator predictions: dense + activation, then one logit per token."""

    def __init__(self, config: HftkBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]
        self.prediction = nn.Linear(config.hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.prediction(self.act(self.dense(hidden))).squeeze(-1)


__all__ = [
    "HftkBertPreTrainedModel",
    "HftkBertModel",
    "HftkBertForMaskedLM",
    "HftkBertForSequenceClassification",
    "HftkBertForTokenClassification",
    "HftkBertForQuestionAnswering",
    "HftkBertForPreTraining",
]
