"""What every objective shares: the model it trains is the model the run saves, one folder.

ELECTRA overrides these: it trains a generator beside the saved discriminator.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hftk.training.outputs import write_model_folder
from hftk.training.checkpoint import load_model_weights


class Objective:
    """Defaults for `hftk pretrain`'s hooks; `prepare` and `count_targets` are each objective's own."""

    def training_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the loop trains, built around the recipe's model."""
        return model

    def save_model(self, model: torch.nn.Module, tokenizer, folder: Path, state_dict: dict | None = None) -> None:
        """Write a checkpoint's `model/` folder (`state_dict`: full weights gathered from FSDP shards)."""
        write_model_folder(model, tokenizer, folder, state_dict)

    def load_model(self, model: torch.nn.Module, folder: Path) -> None:
        """Read back what `save_model` wrote (resuming)."""
        load_model_weights(model, folder)

    def finish(self, model: torch.nn.Module, state_dict: dict | None, tokenizer, output_dir: Path):
        """Write what the run keeps beside its model; return the model (and full weights) the run folder holds."""
        return model, state_dict

    evaluate = None  # or (model, eval_loader, max_batches, accelerator) -> metrics, where the default does not fit
