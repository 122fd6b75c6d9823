"""hftk's own Transformer family, registered with transformers' Auto classes.

`register_auto_classes()` (called by `import hftk`) makes `AutoConfig`/`AutoModel*` resolve
the `hftk_bert`, `hftk_gpt` and `hftk_seq2seq` model types in this Python, and marks every class for
`auto_map`, so `save_pretrained` copies the self-contained code files beside the weights
and the folder loads with `trust_remote_code=True` where hftk is not installed.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from hftk.models.configuration_hftk import HftkBertConfig, HftkConfig, HftkGptConfig, HftkSeq2SeqConfig
from hftk.models.modeling_hftk_bert import (
    HftkBertForMaskedLM,
    HftkBertForQuestionAnswering,
    HftkBertForSequenceClassification,
    HftkBertForTokenClassification,
    HftkBertModel,
)
from hftk.models.modeling_hftk_gpt import HftkGptForCausalLM, HftkGptForSequenceClassification, HftkGptModel
from hftk.models.modeling_hftk_seq2seq import HftkSeq2SeqForConditionalGeneration, HftkSeq2SeqModel

AUTO_CLASSES = {
    HftkBertConfig: {
        AutoModel: HftkBertModel,
        AutoModelForMaskedLM: HftkBertForMaskedLM,
        AutoModelForSequenceClassification: HftkBertForSequenceClassification,
        AutoModelForTokenClassification: HftkBertForTokenClassification,
        AutoModelForQuestionAnswering: HftkBertForQuestionAnswering,
    },
    HftkGptConfig: {
        AutoModel: HftkGptModel,
        AutoModelForCausalLM: HftkGptForCausalLM,
        AutoModelForSequenceClassification: HftkGptForSequenceClassification,
    },
    HftkSeq2SeqConfig: {
        AutoModel: HftkSeq2SeqModel,
        AutoModelForSeq2SeqLM: HftkSeq2SeqForConditionalGeneration,
    },
}

MODEL_TYPES = {config.model_type: config for config in AUTO_CLASSES}


def register_auto_classes() -> None:
    """Register every hftk config and head with the Auto classes (idempotent)."""
    for config_class, heads in AUTO_CLASSES.items():
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        config_class.register_for_auto_class()
        for auto_class, model_class in heads.items():
            auto_class.register(config_class, model_class, exist_ok=True)
            model_class.register_for_auto_class(auto_class.__name__)


__all__ = [
    "AUTO_CLASSES",
    "MODEL_TYPES",
    "HftkConfig",
    "HftkBertConfig",
    "HftkGptConfig",
    "HftkBertModel",
    "HftkBertForMaskedLM",
    "HftkBertForSequenceClassification",
    "HftkBertForTokenClassification",
    "HftkBertForQuestionAnswering",
    "HftkGptModel",
    "HftkGptForCausalLM",
    "HftkGptForSequenceClassification",
    "HftkSeq2SeqConfig",
    "HftkSeq2SeqModel",
    "HftkSeq2SeqForConditionalGeneration",
    "register_auto_classes",
]

register_auto_classes()  # `import hftk` imports this module once transformers is imported
