"""Import existing BERT and GPT-2 checkpoints into hftk's model family (BART and Marian: convert_seq2seq.py).

Users start from weights they already have: the converted model is configured to match the
source exactly (post-LN, learned positions, token types, biases, the GELU variant) and
reproduces its hidden states and logits. Only the parameter names and layouts change
(separate Q/K/V become one fused projection; GPT-2's Conv1D weights are transposed).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedModel
from transformers import BertConfig, GPT2Config

from hftk.commands.convert_seq2seq import SEQ2SEQ_HEADS, SEQ2SEQ_MODEL_TYPES, T5_REFUSAL, convert_seq2seq_model
from hftk.data.tokenizer import save_tokenizer
from hftk.errors import HftkError
from hftk.training.output_lock import locks_folder
from hftk.models import (
    HftkBertConfig,
    HftkBertForMaskedLM,
    HftkBertForQuestionAnswering,
    HftkBertForSequenceClassification,
    HftkBertForTokenClassification,
    HftkBertModel,
    HftkGptConfig,
    HftkGptForCausalLM,
    HftkGptForSequenceClassification,
    HftkGptModel,
)

BERT_HEADS: dict[str, type[PreTrainedModel]] = {
    "BertModel": HftkBertModel,
    "BertForMaskedLM": HftkBertForMaskedLM,
    "BertForPreTraining": HftkBertForMaskedLM,
    "BertForSequenceClassification": HftkBertForSequenceClassification,
    "BertForTokenClassification": HftkBertForTokenClassification,
    "BertForQuestionAnswering": HftkBertForQuestionAnswering,
}
GPT2_HEADS: dict[str, type[PreTrainedModel]] = {
    "GPT2Model": HftkGptModel,
    "GPT2LMHeadModel": HftkGptForCausalLM,
    "GPT2ForSequenceClassification": HftkGptForSequenceClassification,
}

# (source pattern, target template); applied to names with the head prefix already mapped.
BERT_RENAMES = [
    (r"embeddings\.word_embeddings\.", "encoder.embeddings.word_embeddings."),
    (r"embeddings\.position_embeddings\.", "encoder.embeddings.position_embeddings."),
    (r"embeddings\.token_type_embeddings\.", "encoder.embeddings.token_type_embeddings."),
    (r"embeddings\.LayerNorm\.", "encoder.embeddings.norm."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"encoder.layers.\1.attention.out_proj."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"encoder.layers.\1.attention_norm."),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.", r"encoder.layers.\1.mlp.up_proj."),
    (r"encoder\.layer\.(\d+)\.output\.dense\.", r"encoder.layers.\1.mlp.down_proj."),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"encoder.layers.\1.mlp_norm."),
    (r"pooler\.dense\.", "pooler."),
    (r"cls\.predictions\.transform\.dense\.", "head.transform."),
    (r"cls\.predictions\.transform\.LayerNorm\.", "head.norm."),
    (r"cls\.predictions\.decoder\.", "head.decoder."),
    (r"cls\.predictions\.bias", "head.decoder.bias"),
]
GPT2_RENAMES = [
    (r"wte\.", "decoder.embeddings.word_embeddings."),
    (r"wpe\.", "decoder.embeddings.position_embeddings."),
    (r"h\.(\d+)\.ln_1\.", r"decoder.layers.\1.attention_norm."),
    (r"h\.(\d+)\.attn\.c_attn\.", r"decoder.layers.\1.attention.qkv."),
    (r"h\.(\d+)\.attn\.c_proj\.", r"decoder.layers.\1.attention.out_proj."),
    (r"h\.(\d+)\.ln_2\.", r"decoder.layers.\1.mlp_norm."),
    (r"h\.(\d+)\.mlp\.c_fc\.", r"decoder.layers.\1.mlp.up_proj."),
    (r"h\.(\d+)\.mlp\.c_proj\.", r"decoder.layers.\1.mlp.down_proj."),
    (r"ln_f\.", "decoder.final_norm."),
]


def bert_config_to_hftk(config: BertConfig) -> HftkBertConfig:
    return HftkBertConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        hidden_act=config.hidden_act,
        norm_eps=config.layer_norm_eps,
        pre_norm=False,
        embedding_norm=True,
        position_embedding_type="learned",
        max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size,
        attention_bias=True,
        mlp_bias=True,
        hidden_dropout_prob=config.hidden_dropout_prob,
        attention_probs_dropout_prob=config.attention_probs_dropout_prob,
        classifier_dropout=config.classifier_dropout,
        initializer_range=config.initializer_range,
        pad_token_id=config.pad_token_id,
        tie_word_embeddings=config.tie_word_embeddings,
        sparse_prediction=False,
        use_pooler=True,
        id2label=config.id2label,
        label2id=config.label2id,
        problem_type=config.problem_type,
    )


def gpt2_config_to_hftk(config: GPT2Config) -> HftkGptConfig:
    activation = {"gelu_new": "gelu_pytorch_tanh"}.get(config.activation_function, config.activation_function)
    return HftkGptConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.n_embd,
        num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head,
        intermediate_size=config.n_inner or 4 * config.n_embd,
        hidden_act=activation,
        norm_eps=config.layer_norm_epsilon,
        pre_norm=True,
        position_embedding_type="learned",
        max_position_embeddings=config.n_positions,
        type_vocab_size=0,
        attention_bias=True,
        mlp_bias=True,
        hidden_dropout_prob=config.resid_pdrop,
        attention_probs_dropout_prob=config.attn_pdrop,
        classifier_dropout=config.summary_first_dropout,
        initializer_range=config.initializer_range,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        tie_word_embeddings=config.tie_word_embeddings,
        id2label=config.id2label,
        label2id=config.label2id,
        problem_type=config.problem_type,
    )


def _rename(name: str, renames: list[tuple[str, str]]) -> str:
    for pattern, target in renames:
        new, count = re.subn(rf"^{pattern}", target, name)
        if count:
            return new
    return name


def convert_bert_state_dict(state: dict[str, torch.Tensor], head: bool) -> dict[str, torch.Tensor]:
    """Rename BERT weights to hftk's and fuse each layer's Q, K, V into one projection."""
    converted: dict[str, torch.Tensor] = {}
    prefix = "model." if head else ""
    for name, tensor in state.items():
        body = name.removeprefix("bert.")
        if ".attention.self." in body:
            continue  # fused below
        target = _rename(body, BERT_RENAMES)
        on_body = not target.startswith(("head.", "classifier.", "qa_outputs."))
        converted[(prefix if on_body else "") + target] = tensor
    layer = 0
    stem = "bert." if any(k.startswith("bert.") for k in state) else ""
    while f"{stem}encoder.layer.{layer}.attention.self.query.weight" in state:
        for kind in ("weight", "bias"):
            parts = [state[f"{stem}encoder.layer.{layer}.attention.self.{p}.{kind}"] for p in ("query", "key", "value")]
            converted[f"{prefix}encoder.layers.{layer}.attention.qkv.{kind}"] = torch.cat(parts, dim=0)
        layer += 1
    return converted


def convert_gpt2_state_dict(state: dict[str, torch.Tensor], head: bool) -> dict[str, torch.Tensor]:
    """Rename GPT-2 weights to hftk's; Conv1D stores (in, out), nn.Linear (out, in)."""
    converted: dict[str, torch.Tensor] = {}
    prefix = "model." if head else ""
    for name, tensor in state.items():
        body = name.removeprefix("transformer.")
        if body.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # causal-mask buffers of old checkpoints
        target = _rename(body, GPT2_RENAMES)
        if re.search(r"\.(c_attn|c_proj|c_fc)\.weight$", body):
            tensor = tensor.t().contiguous()
        on_body = not target.startswith(("lm_head.", "score."))
        converted[(prefix if on_body else "") + target] = tensor
    return converted


def convert_model(source: PreTrainedModel) -> PreTrainedModel:
    """Convert a loaded transformers BERT, GPT-2, BART or Marian model into the matching hftk model."""
    architecture = type(source).__name__
    if architecture in SEQ2SEQ_HEADS:
        return convert_seq2seq_model(source)
    if architecture.startswith("T5"):
        raise HftkError(T5_REFUSAL)
    if architecture in BERT_HEADS:
        target_class, config = BERT_HEADS[architecture], bert_config_to_hftk(source.config)
        state = convert_bert_state_dict(source.state_dict(), head=architecture != "BertModel")
        if architecture == "BertForPreTraining":
            state = {k: v for k, v in state.items() if not k.startswith("cls.seq_relationship")}
    elif architecture in GPT2_HEADS:
        target_class, config = GPT2_HEADS[architecture], gpt2_config_to_hftk(source.config)
        state = convert_gpt2_state_dict(source.state_dict(), head=architecture != "GPT2Model")
    else:
        supported = ", ".join([*BERT_HEADS, *GPT2_HEADS, *SEQ2SEQ_HEADS])
        raise HftkError(f"cannot convert {architecture}: supported architectures are {supported}")
    if architecture == "BertModel" and not any(k.startswith("pooler.") for k in state):
        config.use_pooler = False
    config._attn_implementation = source.config._attn_implementation
    target = target_class(config)
    missing, unexpected = target.load_state_dict(state, strict=False)
    tied = set(getattr(target, "_tied_weights_keys", None) or {})
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise HftkError(f"conversion of {architecture} left weights unmatched: missing {missing}, unexpected {unexpected}")
    target.tie_weights()
    return target.eval()


def _source_model_class(config: PretrainedConfig) -> type[PreTrainedModel]:
    import transformers

    architecture = (config.architectures or [None])[0]
    if config.model_type in ("t5", "mt5"):
        raise HftkError(T5_REFUSAL)
    if config.model_type in SEQ2SEQ_MODEL_TYPES:
        architecture = architecture if architecture in SEQ2SEQ_HEADS else SEQ2SEQ_MODEL_TYPES[config.model_type]
        return getattr(transformers, architecture)
    if config.model_type not in ("bert", "gpt2"):
        raise HftkError(
            f"cannot convert model_type {config.model_type!r}: hftk converts 'bert', 'gpt2', 'bart' and 'marian' checkpoints"
        )
    if architecture is None:
        architecture = "BertModel" if config.model_type == "bert" else "GPT2LMHeadModel"
    if architecture not in BERT_HEADS and architecture not in GPT2_HEADS:
        supported = ", ".join([*BERT_HEADS, *GPT2_HEADS])
        raise HftkError(f"cannot convert {architecture}: supported architectures are {supported}")
    return getattr(transformers, architecture)


@locks_folder(lambda source, output_dir, **_: output_dir)
def convert_checkpoint(source: str | Path, output_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Convert a BERT/GPT-2/BART/Marian checkpoint folder (or Hub id) and save it, with its tokenizer, to `output_dir`.

    A non-empty `output_dir` is refused unless `overwrite` (then it is emptied first): writing
    into a finished run would leave its old metrics, card and checkpoints beside new weights.
    The model is written into a staging folder and moved into place, so a failure leaves nothing.
    """
    import shutil

    from hftk.training.outputs import check_output_dir, respect_umask

    output_dir = Path(output_dir)
    check_output_dir(output_dir)
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise HftkError(f"{output_dir} is not empty; pass --overwrite to replace what it holds, or choose another folder")
    try:
        config = AutoConfig.from_pretrained(str(source))
    except (OSError, ValueError) as error:
        raise HftkError(f"cannot read a model config at {source}: {error}".splitlines()[0]) from error
    model = convert_model(_source_model_class(config).from_pretrained(str(source)))
    staging = output_dir.absolute().parent / f".{output_dir.name}.convert.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        model.save_pretrained(staging)
        respect_umask(staging.glob("*.safetensors"))
        try:
            save_tokenizer(AutoTokenizer.from_pretrained(str(source)), staging)
        except (OSError, ValueError):
            pass  # a checkpoint without tokenizer files converts all the same
        shutil.rmtree(output_dir, ignore_errors=True)
        os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir
