"""`hftk finetune ... --set lora.r=4`: only adapters and the head train; adapter/ and the merged folder."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.commands.test_finetune import FAST, assert_one_line_error, data, files, finetune_args, hf_bert, hftk_bert, run_hftk  # noqa: F401
from tests.commands.test_finetune import bert_tokenizer  # noqa: F401


def weights(folder) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        state.update(load_file(file))
    return state


@pytest.mark.parametrize("base", ["hftk_bert", "hf_bert"])
def test_lora_trains_only_adapters_and_head(base, request, data, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    start = request.getfixturevalue(base)
    out = tmp_path / "lora"
    run_hftk(*finetune_args("classification", start, out, *files(data, "cls"), "lora.r=4", "training.learning_rate=1e-2"), check=True)
    adapter = out / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 4
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["eval_accuracy"] <= 1

    # The base model of the saved adapter is the starting checkpoint.
    tokenizer = AutoTokenizer.from_pretrained(out)
    base_model = AutoModelForSequenceClassification.from_pretrained(start, num_labels=2)
    start_state = weights(start)
    peft_model = PeftModel.from_pretrained(base_model, adapter).eval()
    adapter_state = load_file(adapter / "adapter_model.safetensors")
    assert any("lora_A" in k for k in adapter_state) and any("lora_B" in k for k in adapter_state)
    lora_b = [v for k, v in adapter_state.items() if "lora_B" in k]
    assert any(float(v.abs().max()) > 0 for v in lora_b), "lora_B stayed at its zero init: adapters did not train"
    # Layers the checkpoint lacks (the head; BERT's pooler on an MLM checkpoint) train fully, without adapters.
    new_layers = ["classifier"] + (["bert.pooler.dense"] if base == "hf_bert" else [])
    for layer in new_layers:
        assert any(k.endswith(f"{layer}.weight") for k in adapter_state), (layer, sorted(adapter_state)[:8])
        assert not any(f"{layer}.lora_" in k for k in adapter_state), layer

    # The merged top-level folder = base + adapter (same logits), and its head moved.
    merged = AutoModelForSequenceClassification.from_pretrained(out).eval()
    batch = tokenizer(["great coffee, will buy again", "stale and broken"], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, peft_model(**batch).logits, atol=1e-4, rtol=1e-4)
    merged_state = merged.state_dict()
    fresh = AutoModelForSequenceClassification.from_pretrained(start, num_labels=2).state_dict()
    head = [k for k in merged_state if k.startswith(("classifier", "score"))]
    assert head and any(not torch.equal(merged_state[k], fresh[k]) for k in head), "head did not train"
    # Frozen base: every shared weight of the merged model is the starting checkpoint's, plus
    # exactly scaling * B @ A where an adapter sits (hand-computed from the saved adapter).
    scaling = config["lora_alpha"] / config["r"]
    adapted = 0
    for key, start_weight in start_state.items():
        if key not in merged_state:
            continue  # the MLM head
        module, kind = key.rsplit(".", 1)
        a, b = adapter_state.get(f"base_model.model.{module}.lora_A.weight"), adapter_state.get(f"base_model.model.{module}.lora_B.weight")
        expected = start_weight
        if kind == "weight" and a is not None:
            expected = start_weight + scaling * (b @ a)
            adapted += 1
        torch.testing.assert_close(merged_state[key], expected, atol=1e-6, rtol=1e-5, msg=f"base weight {key} trained")
    assert adapted >= 4 * 2  # four projection kinds in each of the 2 layers


def test_lora_targets_matching_nothing_is_one_line_error(hftk_bert, data, tmp_path):
    out = tmp_path / "bad"
    result = run_hftk(*finetune_args("classification", hftk_bert, out, *files(data, "cls"), "lora.r=4", "lora.target_modules=[nonexistent]"))
    assert_one_line_error(result, "nonexistent", "lora.target_modules")
    assert not (out / "metrics.json").exists()


def test_lora_ships_the_best_evaluation_not_the_last(hftk_bert, data, tmp_path):
    """Best = highest eval_loss (an early step) forces the restore-best path for a peft model;
    `hftk evaluate` on the merged folder must reproduce that step's logged eval_loss."""
    out = tmp_path / "lora"
    sets = [*files(data, "cls"), "lora.r=4", "training.learning_rate=1e-2", "training.eval_steps=2",
            "training.metric_for_best_model=eval_loss", "training.greater_is_better=true"]
    run_hftk(*finetune_args("classification", hftk_bert, out, *sets), check=True)
    metrics = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "log_history.json").read_text())
    evals = {r["step"]: r["eval_loss"] for r in history if "eval_loss" in r}
    assert metrics["best_step"] < metrics["train_steps"], evals
    assert metrics["eval_loss"] == evals[metrics["best_step"]] == max(evals.values())
    ev = tmp_path / "ev"
    run_hftk("evaluate", "classification", "--model", str(out), "-o", str(ev), "--set", f"data.validation_file={data['cls_eval']}",
             "--set", "data.max_seq_length=64", "--set", "training.per_device_eval_batch_size=32", check=True)
    again = json.loads((ev / "metrics.json").read_text())
    assert again["eval_loss"] == pytest.approx(metrics["eval_loss"], rel=1e-5)
    assert again["eval_accuracy"] == metrics["eval_accuracy"]


@pytest.mark.parametrize("base", ["hftk_bert", "hf_bert"])
def test_peft_save_and_reload_keeps_every_module_hftk_trains(base, request, bert_tokenizer, tmp_path):
    """SEQ_CLS LoRA on an MLM checkpoint, as `hftk finetune` sets it up, saved and reloaded with peft's own
    API (PeftModel / AutoPeftModel): the fresh pooler and classifier train fully, so both must be in
    `modules_to_save` and come back as trained, or the reloaded model gives other logits."""
    from peft import AutoPeftModelForSequenceClassification, PeftModel
    from transformers import AutoModelForSequenceClassification

    from hftk.lora import apply_lora, fresh_modules
    from hftk.recipe import LoraSection

    start = request.getfixturevalue(base)
    model, info = AutoModelForSequenceClassification.from_pretrained(start, num_labels=3, output_loading_info=True)
    pooler = "model.pooler" if base == "hftk_bert" else "bert.pooler.dense"
    assert pooler in fresh_modules(info)  # the MLM checkpoint has no pooler: it starts random
    model = apply_lora(model, LoraSection(r=4), "sequence_classification", fresh_modules(info))
    batch = bert_tokenizer(["great coffee, will buy again", "stale and broken", "it is fine"], padding=True, return_tensors="pt")
    labels = torch.tensor([0, 1, 2])
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    initial = {name: p.detach().clone() for name, p in trainable.items()}
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-2)
    model.train()
    for _ in range(3):
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
    fully_trained = [name for name in trainable if "modules_to_save" in name]
    assert any(f"{pooler}.modules_to_save" in name for name in fully_trained), fully_trained
    assert any("classifier.modules_to_save" in name for name in fully_trained), fully_trained
    assert all(not torch.equal(trainable[name], initial[name]) for name in fully_trained)  # they really trained

    model.save_pretrained(tmp_path / "adapter")
    reloads = {
        "PeftModel": PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(start, num_labels=3), tmp_path / "adapter"),
        "AutoPeftModel": AutoPeftModelForSequenceClassification.from_pretrained(tmp_path / "adapter", num_labels=3),
    }
    for api, reloaded in reloads.items():
        reloaded.eval()
        state = dict(reloaded.named_parameters())
        for name in trainable:
            assert torch.equal(state[name], trainable[name]), (api, name)
        with torch.no_grad():
            assert torch.equal(reloaded(**batch).logits, expected), api


@pytest.mark.parametrize("kind", ["hftk_seq2seq", "bart"])
def test_lora_on_encoder_decoders_targets_self_and_cross_attention(kind):
    """Default targets reach every attention (encoder, decoder, cross) and MLP projection; only adapters train."""
    from transformers import BartConfig, BartForConditionalGeneration

    import hftk  # noqa: F401
    from hftk.lora import apply_lora
    from hftk.models import HftkSeq2SeqConfig, HftkSeq2SeqForConditionalGeneration
    from hftk.recipe import LoraSection

    torch.manual_seed(0)
    if kind == "bart":
        model = BartForConditionalGeneration(BartConfig(vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                                                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32))
    else:
        model = HftkSeq2SeqForConditionalGeneration(HftkSeq2SeqConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))
    linear = {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear) and name != "lm_head"}
    peft_model = apply_lora(model, LoraSection(r=2), "seq2seq_lm")
    assert peft_model.peft_config["default"].task_type == "SEQ_2_SEQ_LM"
    adapted = {name.removeprefix("base_model.model.").removesuffix(".lora_A") for name, _ in peft_model.named_modules() if name.endswith(".lora_A")}
    assert adapted == linear  # self-, cross-attention and MLP layers of encoder and decoder
    assert all("lora_" in name for name, p in peft_model.named_parameters() if p.requires_grad)
    batch = {"input_ids": torch.randint(4, 64, (2, 7)), "labels": torch.randint(4, 64, (2, 5))}
    peft_model(**batch).loss.backward()
