"""LoRA through `peft`: adapters on the attention and feed-forward projections, the task head trained fully.

hftk's layer names (`qkv`, `out_proj`, `up_proj`, `down_proj`) are the default targets; BERT
and GPT-2 checkpoints get theirs. A new task head is always in `modules_to_save`, or it
would stay at its random initialisation.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from peft import LoraConfig, PeftModel, TaskType, get_peft_model

from hftk.errors import HftkError
from hftk.recipe import LoraSection

DEFAULT_TARGETS = {
    "hftk_bert": ["qkv", "out_proj", "up_proj", "down_proj"],
    "hftk_gpt": ["qkv", "out_proj", "up_proj", "down_proj"],
    "hftk_seq2seq": ["qkv", "q_proj", "kv", "out_proj", "up_proj", "down_proj"],  # + cross-attention's q_proj / kv
    "bert": ["query", "key", "value", "dense"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "bart": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    "mbart": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    "marian": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    "t5": ["q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"],
}
TASK_TYPES = {
    "sequence_classification": TaskType.SEQ_CLS,
    "token_classification": TaskType.TOKEN_CLS,
    "question_answering": TaskType.QUESTION_ANS,
    "causal_lm": TaskType.CAUSAL_LM,
    "seq2seq_lm": TaskType.SEQ_2_SEQ_LM,
}
HEADS = {
    "sequence_classification": ["classifier", "score", "pooler"],
    "token_classification": ["classifier"],
    "question_answering": ["qa_outputs"],
    "causal_lm": [],
    "seq2seq_lm": [],
}


def fresh_modules(loading_info: dict) -> list[str]:
    """Modules that `from_pretrained(..., output_loading_info=True)` initialised because the checkpoint
    lacks them (the task head; BERT's pooler on an MLM checkpoint): they must train fully."""
    return sorted({key.rsplit(".", 1)[0] for key in loading_info["missing_keys"]})


def apply_lora(model, lora: LoraSection, kind: str, new_modules: list[str] | None = None) -> PeftModel:
    """Wrap `model` with LoRA adapters; `new_modules` (freshly initialised, e.g. BERT's pooler on an
    MLM checkpoint) train fully instead: a frozen random layer under an adapter cannot learn."""
    targets = lora.target_modules or DEFAULT_TARGETS.get(model.config.model_type)
    if targets is None:
        raise HftkError(
            f"no default LoRA targets for model type {model.config.model_type}: set lora.target_modules=[...] "
            "to the names of its linear layers"
        )
    module_names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    heads = [name for name in HEADS[kind] if name in dict(model.named_children())]
    heads += [name for name in new_modules or [] if not any(name == h or name.startswith(h + ".") for h in heads)]
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        exclude_modules=heads or None,
        modules_to_save=heads or None,
        task_type=TASK_TYPES[kind],
    )
    missing = [target for target in targets if target not in module_names]
    if len(missing) == len(targets):
        raise HftkError(
            f"LoRA target modules {targets} match nothing in {type(model).__name__}; "
            f"its layers include {', '.join(sorted(module_names)[:12])}: fix lora.target_modules"
        )
    try:
        with warnings.catch_warnings():  # peft asks transformers' deprecated name; its warning, not the user's
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
            return get_peft_model(model, config)
    except ValueError as error:
        raise HftkError(f"LoRA setup failed: {str(error).splitlines()[0]}; fix lora.target_modules") from error


def save_lora_outputs(model: PeftModel, output_dir: Path, lora: LoraSection):
    """Save the adapter alone in `adapter/`; return what the run folder holds: merged model or adapter."""
    model.save_pretrained(output_dir / "adapter")
    from hftk.training.outputs import respect_umask

    respect_umask((output_dir / "adapter").glob("*.safetensors"))
    return model.merge_and_unload() if lora.merge else model
