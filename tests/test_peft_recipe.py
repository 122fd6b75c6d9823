"""peft's own recipe on a folder that `hftk pretrain` writes, with peft's defaults only.

A peft user does what peft's docs show: `get_peft_model(AutoModelFor<Task>.from_pretrained(folder),
LoraConfig(task_type=..., r=4, target_modules=[...]))`, trains, `save_pretrained`, and later
`PeftModel.from_pretrained` on a fresh load. The reloaded model gives the trained logits only if every
layer the head had to initialise is in the modules peft's task type saves (`classifier`/`score` for
SEQ_CLS and TOKEN_CLS, `qa_outputs` for QUESTION_ANS); anything else fresh comes back with another
random draw. The folders are built by `hftk pretrain`'s own model builder from its shipped recipes
(tiny sizes), so they carry the config a real pretraining run writes.
"""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from transformers import (
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    GPT2TokenizerFast,
)

import hftk  # noqa: F401  (registers the Auto classes)
from hftk.commands.pretrain import build_model
from hftk.recipe import PretrainRecipe, load_recipe
from tests.commands.test_finetune import DATA, bert_tokenizer  # noqa: F401  (the MiniLM WordPiece tokenizer)

TINY = [
    "model.config.hidden_size=32",
    "model.config.num_hidden_layers=2",
    "model.config.num_attention_heads=2",
    "model.config.intermediate_size=64",
    "data.max_seq_length=32",
]
TARGETS = ["qkv", "out_proj", "up_proj", "down_proj"]  # hftk's attention and feed-forward projections
TEXTS = ["great coffee, will buy again", "stale and broken", "it is fine I suppose"]


def pretraining_folder(path, recipe_name: str, tokenizer, *overrides: str):
    """What `hftk pretrain RECIPE` saves, untrained: its model builder on the recipe, then save_pretrained."""
    recipe = load_recipe(PretrainRecipe, recipe_name, [*TINY, *overrides])
    torch.manual_seed(0)
    build_model(recipe, tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory, bert_tokenizer):
    gpt2 = DATA / "tokenizers" / "gpt2"
    gpt_tokenizer = GPT2TokenizerFast(vocab=str(gpt2 / "encoder.json"), merges=str(gpt2 / "vocab.bpe"))
    gpt_tokenizer.pad_token = gpt_tokenizer.eos_token
    root = tmp_path_factory.mktemp("pretrained")
    return {
        "mlm": pretraining_folder(root / "mlm", "pretrain-default", bert_tokenizer),
        "mlm-cls": pretraining_folder(root / "mlm-cls", "pretrain-default", bert_tokenizer, "model.config.classifier_pooling=cls"),
        "electra": pretraining_folder(root / "electra", "pretrain-electra", bert_tokenizer),
        "clm": pretraining_folder(root / "clm", "pretrain-gpt", gpt_tokenizer),
    }


def labelled_batch(tokenizer, task: TaskType) -> dict[str, torch.Tensor]:
    batch = dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))
    batch.pop("token_type_ids", None)
    if task == TaskType.SEQ_CLS:
        batch["labels"] = torch.tensor([0, 1, 2])
    elif task == TaskType.TOKEN_CLS:
        batch["labels"] = torch.arange(batch["input_ids"].numel()).reshape(batch["input_ids"].shape) % 3
    else:
        batch["start_positions"], batch["end_positions"] = torch.tensor([1, 2, 1]), torch.tensor([3, 2, 4])
    return batch


def outputs(model, batch) -> torch.Tensor:
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        out = model(**inputs)
    return torch.cat([out.start_logits, out.end_logits], -1) if hasattr(out, "start_logits") else out.logits


AUTO_CLASSES = {
    TaskType.SEQ_CLS: AutoModelForSequenceClassification,
    TaskType.TOKEN_CLS: AutoModelForTokenClassification,
    TaskType.QUESTION_ANS: AutoModelForQuestionAnswering,
}


def load_head(folder, task: TaskType, seed: int, **config):
    torch.manual_seed(seed)  # a fresh load draws its new layers from another seed than the trained run
    kwargs = {} if task == TaskType.QUESTION_ANS else {"num_labels": 3}
    return AUTO_CLASSES[task].from_pretrained(folder, **kwargs, **config)


def peft_round_trip(folder, task: TaskType, tmp_path, **config) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """peft's recipe: LoRA with defaults, one AdamW step, save, reload on a fresh load. Returns
    (logits before training, after training, after the reload)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = labelled_batch(tokenizer, task)
    model = get_peft_model(load_head(folder, task, seed=1, **config), LoraConfig(task_type=task, r=4, target_modules=TARGETS))
    before = outputs(model.eval(), batch)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    model(**batch).loss.backward()
    optimizer.step()
    trained = outputs(model.eval(), batch)
    model.save_pretrained(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(load_head(folder, task, seed=2, **config), tmp_path / "adapter")
    return before, trained, outputs(reloaded.eval(), batch)


CASES = [
    ("mlm", TaskType.SEQ_CLS),  # mean pooling, as the recipe sets it
    ("mlm-cls", TaskType.SEQ_CLS),  # the first token's state
    ("mlm", TaskType.TOKEN_CLS),
    ("mlm", TaskType.QUESTION_ANS),
    ("electra", TaskType.SEQ_CLS),  # the discriminator `hftk pretrain pretrain-electra` saves
    ("clm", TaskType.SEQ_CLS),  # hftk_gpt's last-token `score`
]


@pytest.mark.parametrize("kind,task", CASES, ids=[f"{kind}-{task.value}" for kind, task in CASES])
def test_peft_defaults_round_trip_exactly(folders, kind, task, tmp_path):
    before, trained, reloaded = peft_round_trip(folders[kind], task, tmp_path)
    assert not torch.equal(trained, before)  # the step changed the model, so equality below says something
    torch.testing.assert_close(reloaded, trained, rtol=0, atol=0)


def test_the_folder_says_it_has_no_pooler(folders):
    """The pretraining folder's sequence classifier has one fresh layer, `classifier`, whatever the pooling."""
    for kind in ("mlm", "mlm-cls", "electra"):
        _, info = AutoModelForSequenceClassification.from_pretrained(folders[kind], num_labels=3, output_loading_info=True)
        assert {key.rsplit(".", 1)[0] for key in info["missing_keys"]} == {"classifier"}, kind


def test_a_fresh_pooler_outside_classifier_breaks_the_round_trip(folders, tmp_path):
    """The control: the same folder with BERT's pooler switched back on (as folders of earlier hftk
    releases have it) loses the trained logits on reload, which is what the tests above rule out."""
    _, trained, reloaded = peft_round_trip(folders["mlm"], TaskType.SEQ_CLS, tmp_path, use_pooler=True)
    assert not torch.allclose(reloaded, trained, atol=1e-3)
