"""What every objective shares: the model it trains is the model the run saves, one folder; randomness per sample.

ELECTRA overrides the model hooks: it trains a generator beside the saved discriminator.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
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


@dataclass(frozen=True)
class SampleSeeds:
    """A generator per row, seeded from (seed, stream, the row's position in the run's sequence of samples).

    The position of a sample does not depend on how many processes share the global batch, so
    the masks (ELECTRA's samples, denoising's spans) of a global batch are the same at any world
    size, and a resumed run, which prepares the same micro-batch indices, draws what the
    uninterrupted run drew. Positions follow how the batches reach each process:

    - a map-style loader, which Accelerate shards by batches (of each `num_processes` consecutive
      batches of `batch_size` rows, process r takes the r-th): row j of micro-batch `index` on
      process r is sample (index * num_processes + r) * batch_size + j;
    - a streamed corpus, which `split_dataset_by_node` splits by blocks (process r keeps every
      N-th block from the r-th): that row is sample (index * batch_size + j) * num_processes + r.

    Either way the position is the one a single process with a batch of batch_size * num_processes
    (or the same batch with gradient accumulation) gives the same sample.
    """

    seed: int
    batch_size: int
    eval_batch_size: int
    rank: int = 0
    num_processes: int = 1
    streamed: bool = False  # the training loader is a stream split by blocks; evaluation never is

    @classmethod
    def for_run(cls, recipe, accelerator) -> SampleSeeds:
        training = recipe.training
        return cls(
            seed=training.seed,
            batch_size=training.per_device_train_batch_size,
            eval_batch_size=training.per_device_eval_batch_size,
            rank=accelerator.process_index,
            num_processes=accelerator.num_processes,
            streamed=recipe.data.streaming,
        )

    def positions(self, index: int, rows: int, evaluation: bool = False) -> list[int]:
        """The sample positions of the `rows` rows of micro-batch `index` on this process."""
        if self.streamed and not evaluation:
            return [(index * self.batch_size + j) * self.num_processes + self.rank for j in range(rows)]
        size = self.eval_batch_size if evaluation else self.batch_size
        first = (index * self.num_processes + self.rank) * size
        return list(range(first, first + rows))

    def generators(self, index: int, rows: int, evaluation: bool = False) -> list[torch.Generator]:
        """One freshly seeded generator per row; evaluation has its own stream, so its masks stay fixed across steps."""
        stream = "eval" if evaluation else "train"
        return [torch.Generator().manual_seed(row_seed(self.seed, stream, p)) for p in self.positions(index, rows, evaluation)]


def row_seed(seed: int, stream: str, position: int) -> int:
    """(seed, stream, position) hashed to 32 bits: torch's CPU generator (MT19937) keeps only the low 32 bits
    of a seed, so an arithmetic mix such as seed * 2**40 + position would give every seed the same draws."""
    return int.from_bytes(hashlib.blake2b(f"{seed}/{stream}/{position}".encode(), digest_size=4).digest(), "little")
