"""Why does ModernBERT's body fine-tune better on wnut16 than hftk's? Ablate the token classifier's input.

    python benchmarks/probe_token_head.py runs/ttq/pretrain/hftk --variant plain keep-mlm-head --seeds 1 2 3
    python benchmarks/probe_token_head.py runs/ttq/pretrain/modernbert-25 --variant plain drop-mlm-head reinit-mlm-head

`transformers`' ModernBertForTokenClassification reads `head(last_hidden_state)`: the pretrained MLM
head's dense + activation + norm stays under the new classifier. hftk's HftkBertForTokenClassification
reads the body's output directly and leaves the MLM head's `head.transform` / `head.norm` behind.
Each variant changes only that, then runs hftk's own `finetune` (the code `hftk finetune ner` runs)
with the settings of benchmarks/time_to_quality.py (LR 3e-4, 3 epochs, 64 tokens, one thread):

    plain            the model as `AutoModelForTokenClassification` builds it
    keep-mlm-head    (hftk) the MLM head's pretrained dense + activation + norm under the classifier
    fresh-mlm-head   (hftk) the same layers freshly initialised: capacity without the pretrained weights
    drop-mlm-head    (ModernBERT) the classifier reads the body's final norm directly, as hftk's does
    reinit-mlm-head  (ModernBERT) its head layer freshly initialised

Scores: wnut16 test entity F1 (the test file scored once after the last step), mean ± sd over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

import hftk.commands.finetune as finetune_command
from hftk.recipe import FinetuneRecipe, load_recipe

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


class PretrainedHeadFeatures(nn.Module):
    """hftk's MLM head minus its vocabulary decoder: dense + activation + norm (LMPredictionHead.features)."""

    def __init__(self, head_module: nn.Module) -> None:
        super().__init__()
        self.transform, self.act, self.norm = head_module.transform, head_module.act, head_module.norm

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.transform(hidden)))


def hftk_head_features(folder: str, config, pretrained: bool) -> nn.Module:
    from hftk.models.modeling_hftk import LMPredictionHead

    head = LMPredictionHead(config)
    if pretrained:
        state = load_file(str(Path(folder) / "model.safetensors"))
        own = {k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.") and not k.startswith("head.decoder")}
        missing, unexpected = head.load_state_dict(own, strict=False)
        assert not unexpected and all(k.startswith("decoder") for k in missing), (missing, unexpected)
    else:
        nn.init.normal_(head.transform.weight, std=config.initializer_range)
        nn.init.zeros_(head.transform.bias)
    return PretrainedHeadFeatures(head)


def patch_build_head(variant: str, folder: str) -> None:
    original = finetune_command.build_head

    def build_head(recipe, task, config):
        model, fresh = original(recipe, task, config)
        if variant in ("keep-mlm-head", "fresh-mlm-head"):
            assert type(model).__name__ == "HftkBertForTokenClassification", type(model)
            # The classifier reads `classifier(dropout(hidden))`: put the head's layers in front of the dropout.
            model.dropout = nn.Sequential(hftk_head_features(folder, model.config, variant == "keep-mlm-head"), model.dropout)
        elif variant == "drop-mlm-head":
            assert type(model).__name__ == "ModernBertForTokenClassification", type(model)
            model.head = nn.Identity()
        elif variant == "reinit-mlm-head":
            assert type(model).__name__ == "ModernBertForTokenClassification", type(model)
            model.head.dense.reset_parameters()
            nn.init.normal_(model.head.dense.weight, std=model.config.initializer_range)
            model.head.norm.reset_parameters()
        return model, fresh

    finetune_command.build_head = build_head


def run(folder: str, variant: str, seed: int, out: Path, lr: float, epochs: int, min_steps: str) -> float:
    metrics = out / "metrics.json"
    if not metrics.is_file():
        patch_build_head(variant, folder)
        recipe = load_recipe(
            FinetuneRecipe,
            "finetune-ner",
            [
                f"model.name_or_path={folder}", f"output.output_dir={out}", "output.overwrite=true",
                f"training.seed={seed}", f"training.learning_rate={lr}", f"training.num_train_epochs={epochs}",
                f"data.train_file={SHARED / 'ner/wnut16/train.jsonl'}", f"data.validation_file={SHARED / 'ner/wnut16/test.jsonl'}",
                "data.max_seq_length=64", "training.num_threads=1", "training.save_steps=null", "training.report_to=[]",
                "training.eval_steps=100000", f"training.min_steps={min_steps}",
            ],
        )  # fmt: skip
        finetune_command.finetune(recipe)
    return json.loads(metrics.read_text())["eval_f1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a pretrained MLM folder (hftk_bert or ModernBERT)")
    parser.add_argument("--variant", nargs="+", default=["plain"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--min-steps", default="300", help="training.min_steps (the recipe's 300; null: the epochs only)")
    parser.add_argument("--output", type=Path, default=Path("runs/probe-token-head"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    for variant in args.variant:
        scores = []
        for seed in args.seeds:
            setting = f"{variant}-lr{args.learning_rate:g}-ep{args.epochs}-min{args.min_steps}"
            out = args.output / Path(args.model).name / setting / f"seed-{seed}"
            scores.append(run(args.model, variant, seed, out, args.learning_rate, args.epochs, args.min_steps))
            finetune_command.build_head = ORIGINAL_BUILD_HEAD
        spread = f" ± {statistics.stdev(scores):.3f}" if len(scores) > 1 else ""
        print(
            f"{args.model} {variant} lr {args.learning_rate:g}: wnut16 test entity F1 "
            f"{statistics.mean(scores):.3f}{spread} ({', '.join(f'{s:.3f}' for s in scores)})",
            flush=True,
        )


ORIGINAL_BUILD_HEAD = finetune_command.build_head

if __name__ == "__main__":
    main()
