"""Layer selection copies the chosen teacher blocks exactly: weights, and the states they compute."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

import hftk  # noqa: F401
from hftk.commands.convert import convert_model
from hftk.distill.student import layer_list_name, select_layers
from hftk.errors import HftkError
from hftk.models import HftkBertConfig, HftkBertForSequenceClassification

TINY = dict(vocab_size=120, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=48,
            max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3)


def hf_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(**TINY)).eval()


def teachers() -> dict[str, torch.nn.Module]:
    torch.manual_seed(1)
    native = HftkBertForSequenceClassification(HftkBertConfig(**TINY)).eval()
    return {"hftk_bert": native, "bert": hf_bert(), "converted_bert": convert_model(hf_bert()).eval()}


def block_io(model: torch.nn.Module, inputs: dict, replace: dict[int, torch.Tensor] | None = None) -> dict[int, tuple]:
    """(input, output) hidden states of every block; `replace` feeds block i a given input instead."""
    blocks = model.get_submodule(layer_list_name(model))
    seen: dict[int, tuple] = {}
    handles = []
    for index, block in enumerate(blocks):
        def pre(module, args, kwargs, index=index):
            if replace and index in replace:
                if args:
                    return (replace[index], *args[1:]), kwargs
                return args, {**kwargs, "hidden_states": replace[index]}
            return None

        def post(module, args, kwargs, output, index=index):
            hidden_in = args[0] if args else kwargs["hidden_states"]
            seen[index] = (hidden_in.detach().clone(), (output[0] if isinstance(output, tuple) else output).detach().clone())

        handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(block.register_forward_hook(post, with_kwargs=True))
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    for handle in handles:
        handle.remove()
    return seen, out


@pytest.mark.parametrize("name", ["hftk_bert", "bert", "converted_bert"])
def test_selected_layers_reproduce_the_teacher_blocks(name):
    teacher = teachers()[name]
    layers = [0, 2, 3]
    student = select_layers(teacher, layers)
    assert student.config.num_hidden_layers == 3 and type(student) is type(teacher)
    prefix = layer_list_name(teacher)
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for key, tensor in s_state.items():
        if key.startswith(prefix + "."):
            index, rest = key[len(prefix) + 1 :].split(".", 1)
            source = t_state[f"{prefix}.{layers[int(index)]}.{rest}"]
        else:
            source = t_state[key]
        assert torch.equal(tensor, source), key
    assert len(s_state) < len(t_state)

    torch.manual_seed(2)
    inputs = {"input_ids": torch.randint(5, 120, (2, 9)), "attention_mask": torch.tensor([[1] * 9, [1] * 6 + [0] * 3])}
    teacher_io, teacher_out = block_io(teacher, inputs)
    # Each student block, fed the input its teacher block saw, gives the teacher block's output exactly.
    feed = {k: teacher_io[layer][0] for k, layer in enumerate(layers)}
    student_io, student_out = block_io(student, inputs, replace=feed)
    for k, layer in enumerate(layers):
        assert torch.equal(student_io[k][1], teacher_io[layer][1]), (k, layer)
    assert torch.equal(student_out.hidden_states[0], teacher_out.hidden_states[0])  # embeddings
    # The first two blocks are consecutive in the teacher: the plain forward pass agrees there too.
    _, plain = block_io(student, inputs)
    assert torch.equal(plain.hidden_states[1], teacher_out.hidden_states[1])


def test_all_layers_is_the_teacher():
    teacher = teachers()["converted_bert"]
    student = select_layers(teacher, [0, 1, 2, 3])
    inputs = {"input_ids": torch.randint(5, 120, (2, 7))}
    with torch.no_grad():
        assert torch.equal(student(**inputs).logits, teacher(**inputs).logits)


def test_layers_out_of_range_is_an_error():
    with pytest.raises(HftkError, match="0..3"):
        select_layers(hf_bert(), [0, 4])
