"""`hftk distill` stopped by Ctrl-C and resumed equals an uninterrupted run (student and hidden-state projection restored).

The student trains with dropout (0.1, hidden and attention): the resumed run must also draw the
dropout masks the uninterrupted one draws. The resume is mid-epoch (step 4 of 6 batches), where the
fresh loader iterator's seed draw used to shift the global RNG; the shared loop (hftk.training.loop)
puts the checkpoint's RNG state back after it (without that, this test fails: classifier.weight).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hftk.errors import TrainingInterrupted

SHARED = Path(os.environ.get("HFTK_SHARED_DIR", Path(__file__).resolve().parents[2] / ".." / "shared")).resolve()


def test_interrupted_distillation_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    from hftk.data.tokenizer import train_tokenizer
    from hftk.recipe.distill import DistillRecipe
    from hftk.commands.distill import distill
    from hftk.models import HftkBertConfig, HftkBertForSequenceClassification
    from hftk.recipe import load_recipe

    with open(SHARED / "data" / "classification" / "fine_foods" / "train.jsonl", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in list(handle)[:48]]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tokenizer = train_tokenizer([row["text"] for row in rows], kind="wordpiece", vocab_size=200, min_frequency=1, model_max_length=64)
    torch.manual_seed(0)
    labels = {"id2label": {0: "great", 1: "other"}, "label2id": {"great": 0, "other": 1}}
    config = HftkBertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id, **labels)
    HftkBertForSequenceClassification(config).save_pretrained(tmp_path / "teacher")
    tokenizer.save_pretrained(tmp_path / "teacher")
    sets = [
        f"teacher.name_or_path={tmp_path / 'teacher'}", "student.layers=null", "student.config.hidden_size=16",
        "student.config.num_hidden_layers=1", "student.config.num_attention_heads=2", "student.config.intermediate_size=32",
        "student.config.max_position_embeddings=64", "student.config.hidden_dropout_prob=0.1", "student.config.attention_probs_dropout_prob=0.1", "distill.hidden_weight=1.0", f"data.train_file={train}",
        f"data.validation_file={train}", "data.max_seq_length=64", "training.num_train_epochs=null", "training.max_steps=5",
        "training.per_device_train_batch_size=8", "training.eval_steps=1000", "training.save_steps=2", "training.report_to=[]",
        "training.num_threads=1", "training.learning_rate=1e-3",
    ]

    def run(name: str, resume: bool = False) -> Path:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state()  # each run in this process starts as a fresh `hftk distill` would
        torch.manual_seed(0)
        return distill(load_recipe(DistillRecipe, "distill-classification", [*sets, f"output.output_dir={tmp_path / name}"]), resume=resume)

    reference = run("reference")
    monkeypatch.setenv("HFTK_FAULT", "step:3")
    monkeypatch.setenv("HFTK_FAULT_SIGNAL", "INT")
    with pytest.raises(TrainingInterrupted):
        run("resumed")
    monkeypatch.delenv("HFTK_FAULT")
    resumed = run("resumed", resume=True)
    expected, actual = load_file(reference / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert expected.keys() == actual.keys() and json.loads((resumed / "config.json").read_text())["hidden_size"] == 16
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
