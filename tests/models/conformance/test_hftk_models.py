"""transformers' `ModelTesterMixin`, `GenerationTesterMixin` and `ConfigTester` on every hftk class.

The mixins are transformers' own (vendored in `upstream/`), run as transformers runs them
for a model of the library, on tiny configs of `hftk_bert`, `hftk_gpt` and `hftk_seq2seq` in
their default config and in the other position / norm variants. Warnings are errors here: a conformant
model runs on the current API of the pinned transformers without deprecation warnings.
"""

from __future__ import annotations

import unittest
import warnings

import pytest
from transformers.models.auto import modeling_auto

from hftk.models import (
    HftkBertConfig,
    HftkBertForMaskedLM,
    HftkBertForPreTraining,
    HftkBertForQuestionAnswering,
    HftkBertForSequenceClassification,
    HftkBertForTokenClassification,
    HftkBertModel,
    HftkGptConfig,
    HftkGptForCausalLM,
    HftkGptForSequenceClassification,
    HftkGptModel,
    HftkSeq2SeqConfig,
    HftkSeq2SeqForConditionalGeneration,
    HftkSeq2SeqModel,
)

from .upstream.generation.test_utils import GenerationTesterMixin
from .upstream.test_configuration_common import ConfigTester
from .upstream.test_modeling_common import ModelTesterMixin, ids_tensor, random_attention_mask

pytestmark = [
    pytest.mark.filterwarnings("error"),
    # Not from hftk: torch's inductor compiles through a deprecated torch.jit helper of its own,
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
    # and transformers' retry / flaky decorators return the test's value, which unittest warns about.
    pytest.mark.filterwarnings("ignore:It is deprecated to return a value that is not None:DeprecationWarning"),
]

# What transformers' own tables would say if hftk's models were part of the library: the
# mixins pick labels, skip base models in training tests etc. by these name tables.
TASK_TABLES = {
    "MODEL_MAPPING_NAMES": {"hftk_bert": "HftkBertModel", "hftk_gpt": "HftkGptModel", "hftk_seq2seq": "HftkSeq2SeqModel"},
    "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES": {"hftk_seq2seq": "HftkSeq2SeqForConditionalGeneration"},
    "MODEL_FOR_MASKED_LM_MAPPING_NAMES": {"hftk_bert": "HftkBertForMaskedLM"},
    "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES": {"hftk_gpt": "HftkGptForCausalLM"},
    "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES": {
        "hftk_bert": "HftkBertForSequenceClassification",
        "hftk_gpt": "HftkGptForSequenceClassification",
    },
    "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES": {"hftk_bert": "HftkBertForTokenClassification"},
    "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES": {"hftk_bert": "HftkBertForQuestionAnswering"},
    "MODEL_FOR_PRETRAINING_MAPPING_NAMES": {"hftk_bert": "HftkBertForPreTraining"},
}


@pytest.fixture(autouse=True, scope="module")
def hftk_in_transformers_tables():
    with pytest.MonkeyPatch.context() as patch:
        for table, entries in TASK_TABLES.items():
            for model_type, class_name in entries.items():
                patch.setitem(getattr(modeling_auto, table), model_type, class_name)
        yield


class HftkModelTester:
    """Builds tiny configs and inputs the way transformers' per-model testers do."""

    batch_size = 13
    seq_length = 7
    is_training = True
    use_labels = True
    vocab_size = 99
    hidden_size = 32
    num_hidden_layers = 2
    num_attention_heads = 4
    intermediate_size = 37
    max_position_embeddings = 64
    type_vocab_size = 2
    type_sequence_label_size = 2
    num_labels = 3

    def __init__(self, parent, config_class, overrides: dict) -> None:
        self.parent = parent
        self.config_class = config_class
        self.overrides = overrides
        self.use_token_type_ids = config_class is HftkBertConfig

    def get_config(self):
        fields = dict(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings,
            num_labels=self.num_labels,
        )
        if self.config_class is HftkBertConfig:
            fields["type_vocab_size"] = self.type_vocab_size
        else:
            fields.update(bos_token_id=1, eos_token_id=2, pad_token_id=0)
        return self.config_class(**{**fields, **self.overrides})

    def prepare_config_and_inputs_for_common(self):
        inputs = {
            "input_ids": ids_tensor([self.batch_size, self.seq_length], self.vocab_size),
            "attention_mask": random_attention_mask([self.batch_size, self.seq_length]),
        }
        if self.use_token_type_ids:
            inputs["token_type_ids"] = ids_tensor([self.batch_size, self.seq_length], self.type_vocab_size)
        return self.get_config(), inputs


class HftkSeq2SeqModelTester(HftkModelTester):
    """Inputs as transformers' BART tester makes them: a source ending in EOS, decoder inputs."""

    pad_token_id, bos_token_id, eos_token_id = 1, 0, 2

    def get_config(self):
        fields = dict(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings,
            pad_token_id=self.pad_token_id,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            decoder_start_token_id=self.eos_token_id,
        )
        return self.config_class(**{**fields, **self.overrides})

    def prepare_config_and_inputs_for_common(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size).clamp(3)
        input_ids[:, -1] = self.eos_token_id
        decoder_input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size).clamp(3)
        inputs = {
            "input_ids": input_ids,
            "attention_mask": input_ids.ne(self.pad_token_id),
            "decoder_input_ids": decoder_input_ids,
            "decoder_attention_mask": decoder_input_ids.ne(self.pad_token_id),
        }
        return self.get_config(), inputs


# The variant classes rerun what a position / norm variant can change: forward outputs and their
# equivalences, save/load/init, training with and without gradient checkpointing, SDPA vs eager
# in float32, embeddings, and cached / static-cache generation. Everything else (dtype matrices,
# compile, loading machinery, decoding strategies) is architecture-independent and runs once, in
# the default-config classes, to keep the suite's runtime modest.
VARIANT_TESTS = (
    "test_attention_outputs",
    "test_hidden_states_output",
    "test_retain_grad_hidden_states_attentions",
    "test_model_outputs_equivalence",
    "test_batching_equivalence",
    "test_determinism",
    "test_save_load",
    "test_can_init_all_missing_weights",
    "test_init_weights_can_init_buffers",
    "test_training",  # and the gradient-checkpointing variants (prefix)
    "test_inputs_embeds",
    "test_resize_tokens_embeddings",
    "test_eager_matches_sdpa_inference_08_fp32",  # left padding
    "test_eager_matches_sdpa_inference_11_fp32",  # left padding, no mask
    "test_eager_matches_sdpa_inference_13_fp32",  # right padding
    "test_causal_lm_loss_honors_shift_labels",
    "test_greedy_generate_dict_outputs_use_cache",
    "test_generate_continue_from_past_key_values",
    "test_left_padding_compatibility",
    "test_generate_with_static_cache",
    "test_past_key_values_format",
    "test_config",
    "test_every_hftk_class_is_tested",
)


# transformers' @slow tests (its nightly CI) that are hftk's concern: compile and export, training
# under compile, SDPA vs eager in generation. conftest.py makes @slow a mark instead of a skip.
SLOW_TESTS_RUN_HERE = (
    "test_torch_export_static",
    "test_torch_export_generate_static",  # and _static_cache
    "test_torch_compile_for_training",
    "test_sdpa_can_compile_dynamic",
    "test_eager_matches_sdpa_generate",
    "test_generate_inputs_embeds_one_token",
)


class HftkCommonTests(ModelTesterMixin):
    """Shared set-up; subclasses name the config class, the model classes and the variant."""

    config_class = HftkBertConfig
    overrides: dict = {}
    # transformers skips this for models "added before 2023" (no copyright year in the file): run it.
    test_can_init_all_missing_weights_before_2023 = True

    variant = False
    model_tester_factory = HftkModelTester

    def setUp(self):
        name = self._testMethodName
        if self.variant and not name.startswith(VARIANT_TESTS):
            self.skipTest("variant-independent: runs in the default-config class")
        if getattr(getattr(self, name), "transformers_slow", False) and not name.startswith(SLOW_TESTS_RUN_HERE):
            self.skipTest("transformers @slow, not about hftk's modelling (integration/flash/onnx/dynamic export)")
        self.model_tester = self.model_tester_factory(self, self.config_class, self.overrides)
        self.config_tester = ConfigTester(self, config_class=self.config_class, hidden_size=40)

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_bc_cache_name_forward(self):
        """transformers' test records the old name's deprecation warning, which this module's error filter would raise."""
        with warnings.catch_warnings():
            warnings.filterwarnings("always", message="`past_key_values` is deprecated", category=FutureWarning)
            super().test_bc_cache_name_forward()

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        """Replaced-token labels for the ELECTRA discriminator, as transformers' Electra tester adds them."""
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels)
        if return_labels and model_class is HftkBertForPreTraining:  # a function of the inputs: the same on every call
            inputs_dict["labels"] = inputs_dict["input_ids"] % 2
        return inputs_dict

    def test_every_hftk_class_is_tested(self):
        """No vacuous pass: the mixins above iterate over every class of the family."""
        family = {HftkBertConfig: BERT_CLASSES, HftkGptConfig: GPT_CLASSES, HftkSeq2SeqConfig: SEQ2SEQ_CLASSES}[
            self.config_class
        ]
        self.assertEqual(set(self.all_model_classes), set(family))
        self.assertTrue(all(cls.supports_gradient_checkpointing for cls in self.all_model_classes))


BERT_CLASSES = (
    HftkBertModel,
    HftkBertForMaskedLM,
    HftkBertForSequenceClassification,
    HftkBertForTokenClassification,
    HftkBertForQuestionAnswering,
    HftkBertForPreTraining,
)
GPT_CLASSES = (HftkGptModel, HftkGptForCausalLM, HftkGptForSequenceClassification)
SEQ2SEQ_CLASSES = (HftkSeq2SeqModel, HftkSeq2SeqForConditionalGeneration)


class HftkBertTest(HftkCommonTests, unittest.TestCase):
    """hftk_bert default: pre-LN, learned positions, LayerNorm."""

    config_class = HftkBertConfig
    all_model_classes = BERT_CLASSES


class HftkGptTest(HftkCommonTests, GenerationTesterMixin, unittest.TestCase):
    """hftk_gpt default: pre-LN, rotary positions, LayerNorm."""

    config_class = HftkGptConfig
    all_model_classes = GPT_CLASSES




class HftkBertPostLnSinusoidalTest(HftkBertTest):
    """BERT's layout (post-LN, embedding norm, biases) with fixed sinusoidal positions."""

    variant = True
    overrides = dict(
        pre_norm=False, embedding_norm=True, attention_bias=True, mlp_bias=True, position_embedding_type="sinusoidal"
    )


class HftkBertRopeRmsNormTest(HftkBertTest):
    """Rotary positions, RMSNorm, gated feed-forward, narrower embeddings projected up (ELECTRA's generator)."""

    variant = True
    overrides = dict(position_embedding_type="rope", norm_type="rmsnorm", gated_ffn=True, embedding_size=16)


class HftkGptLearnedRmsNormTest(HftkGptTest):
    """GPT-2's learned positions, with RMSNorm."""

    variant = True
    overrides = dict(position_embedding_type="learned", norm_type="rmsnorm")


class HftkGptPostLnSinusoidalTest(HftkGptTest):
    """Post-LN with sinusoidal positions and biases."""

    variant = True
    overrides = dict(pre_norm=False, position_embedding_type="sinusoidal", attention_bias=True, mlp_bias=True)


class HftkSeq2SeqTest(HftkCommonTests, GenerationTesterMixin, unittest.TestCase):
    """hftk_seq2seq default: pre-LN, sinusoidal positions, scaled embeddings, shared and tied tables."""

    config_class = HftkSeq2SeqConfig
    model_tester_factory = HftkSeq2SeqModelTester
    all_model_classes = SEQ2SEQ_CLASSES
    is_encoder_decoder = True
    # CI time: the two slowest tests here, whose subject runs elsewhere at a fraction of the cost.
    CI_SKIPS = {
        "test_generate_compilation_all_outputs": "compiles once per output flag; compiled decoding runs in "
        "test_generate_compile_model_forward_fullgraph and the export tests",
        "test_bc_torch_dtype": "dtype loading machinery, architecture-independent: runs in the hftk_bert/hftk_gpt classes",
    }

    def setUp(self):
        if self._testMethodName in self.CI_SKIPS:
            self.skipTest(self.CI_SKIPS[self._testMethodName])
        super().setUp()


class HftkSeq2SeqPostLnRopeTest(HftkSeq2SeqTest):
    """Post-LN with rotary positions (self-attention only) and biases."""

    variant = True
    overrides = dict(pre_norm=False, position_embedding_type="rope", attention_bias=True, mlp_bias=True)
