"""Several processes, FSDP and multi-node launches: the parts Accelerate leaves to the script.

Accelerate does the launching, the process group, FSDP2 wrapping and checkpoint formats. Three
gaps remain on the machines hftk is tested on, and this module closes them:

- `accelerate launch` with a config that says `use_cpu: true` and `distributed_type: FSDP`
  (or MULTI_GPU) starts its processes through the GPU launcher, which does not pass
  `ACCELERATE_USE_CPU` on; without a GPU every process then sees `DistributedType.NO` and
  believes it is the only one, so all of them write the same run folder. `make_accelerator`
  asks for CPU processes whenever a launcher started several and no accelerator device exists.
- Accelerate turns FSDP on only for GPU-like devices and silently falls back to plain data
  parallelism on CPU, although FSDP2 (`fully_shard`) runs on CPU with gloo.
  `make_accelerator` promotes such a run to FSDP2 so that the FSDP code paths (wrapping,
  sharded checkpoints, gathered state dicts) are what runs, and are tested, on CPU.
- Saving a sharded model gathers its weights collectively: every rank must take part
  (`full_state_dict`), then rank 0 alone writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin, gather_object

from hftk.errors import HftkError

ACCELERATE_CONFIGS_DIR = Path(__file__).resolve().parents[1] / "accelerate_configs"


def accelerate_config_paths() -> dict[str, Path]:
    """The Accelerate config files that ship with hftk (`hftk accelerate-config NAME` prints one)."""
    return {path.stem: path for path in sorted(ACCELERATE_CONFIGS_DIR.glob("*.yaml"))}


def launched_world_size() -> int:
    """Processes the launcher (torchrun, accelerate launch) started; 1 for a plain `hftk` run."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def has_accelerator_device() -> bool:
    accelerator_api = getattr(torch, "accelerator", None)
    if accelerator_api is not None and hasattr(accelerator_api, "is_available"):
        return bool(accelerator_api.is_available())
    return torch.cuda.is_available()


def fsdp_requested() -> bool:
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def make_accelerator(**kwargs) -> Accelerator:
    """An `Accelerator` that sees every launched process, with FSDP2 on CPU when the config asks for FSDP."""
    cpu = launched_world_size() > 1 and not has_accelerator_device()
    accelerator = Accelerator(cpu=cpu or kwargs.pop("cpu", False), **kwargs)
    if fsdp_requested() and accelerator.distributed_type == DistributedType.MULTI_CPU:
        plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* variables accelerate launch sets
        if plugin.fsdp_version != 2:
            raise HftkError("FSDP on CPU processes needs FSDP2: set fsdp_version: 2 in the Accelerate config")
        if accelerator.mixed_precision != "no":
            plugin.set_mixed_precision(accelerator.mixed_precision)
        # Both shared states: AcceleratorState re-reads PartialState's whenever it is instantiated again.
        accelerator.state.fsdp_plugin = plugin
        accelerator.state.distributed_type = DistributedType.FSDP
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    if accelerator.num_processes != launched_world_size():
        raise HftkError(
            f"the launcher started {launched_world_size()} processes but Accelerate sees {accelerator.num_processes}: "
            "without a GPU launch with ACCELERATE_USE_CPU=true (or use_cpu: true in the Accelerate config)"
        )
    return accelerator


def is_sharded(accelerator: Accelerator) -> bool:
    """True when the weights are split across processes, so reading them is a collective operation."""
    if accelerator.distributed_type == DistributedType.FSDP:
        return True
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return accelerator.state.deepspeed_plugin.zero_stage == 3
    return False


def full_state_dict(accelerator: Accelerator, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The full weights, for rank 0 to write; None where the model's own `state_dict()` will do.

    Under FSDP the weights are gathered from every shard: call this on every rank.
    """
    if not is_sharded(accelerator):
        return None
    state_dict = accelerator.get_state_dict(model)
    # The gathered copies of tied parameters (embeddings / LM head) are separate tensors; share them
    # again so `save_pretrained` drops the duplicate as it does for an unsharded model.
    first_name: dict[int, str] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        source = first_name.setdefault(id(parameter), name)
        if source != name and source in state_dict and name in state_dict:
            state_dict[name] = state_dict[source]
    return state_dict


@contextlib.contextmanager
def as_plain_module(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The model seen as its own class while `save_pretrained` runs.

    FSDP2 swaps the module's class for a generated `FSDP<Name>` subclass; `save_pretrained` would
    then copy torch's FSDP source files as the model code and write their names into `auto_map`.
    """
    from torch.distributed.fsdp import FSDPModule

    sharded_class = type(model)
    if not issubclass(sharded_class, FSDPModule):
        yield model
        return
    model.__class__ = next(base for base in sharded_class.__bases__ if not issubclass(base, FSDPModule))
    try:
        yield model
    finally:
        model.__class__ = sharded_class


def load_full_state_dict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load full (unsharded) weights into a sharded model; every rank calls this with the same weights."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    missing, unexpected = set_model_state_dict(model, state_dict, options=StateDictOptions(full_state_dict=True, strict=False))
    tied = set(getattr(model, "_tied_weights_keys", None) or {})
    if unexpected or set(missing) - tied:
        raise HftkError(f"saved weights do not fit the model: missing {sorted(missing)}, unexpected {sorted(unexpected)}")


def layer_classes_to_wrap(accelerator: Accelerator, model: torch.nn.Module) -> list[str]:
    """The block classes FSDP's TRANSFORMER_BASED_WRAP would wrap: the config's, else `_no_split_modules`."""
    plugin = accelerator.state.fsdp_plugin
    names = plugin.transformer_cls_names_to_wrap
    if isinstance(names, str):
        names = names.split(",")
    return list(names or getattr(model, "_no_split_modules", None) or [])


def check_fsdp_wrappable(accelerator: Accelerator, model: torch.nn.Module) -> None:
    """One-line error before training when FSDP's transformer wrap policy finds no block to shard."""
    if accelerator.distributed_type != DistributedType.FSDP:
        return
    plugin = accelerator.state.fsdp_plugin
    policy = plugin.auto_wrap_policy
    policy_name = policy if isinstance(policy, str) else getattr(policy, "__name__", str(policy))
    if "transformer" not in str(policy_name).lower():
        return
    present = {type(module).__name__ for module in model.modules()}
    wanted = layer_classes_to_wrap(accelerator, model)
    missing = [name for name in wanted if name not in present]
    if wanted and not missing:
        return
    blocks = sorted(name for name in present if name.endswith(("Block", "Layer", "DecoderLayer", "EncoderLayer")))
    hint = f"set fsdp_transformer_layer_cls_to_wrap: {blocks[0]} in the Accelerate config" if blocks else (
        "use fsdp_auto_wrap_policy: SIZE_BASED_WRAP in the Accelerate config"
    )
    what = f"has no layer class {', '.join(missing)}" if missing else "names no transformer layer class (_no_split_modules)"
    raise HftkError(f"FSDP TRANSFORMER_BASED_WRAP cannot wrap {type(model).__name__}: it {what}; {hint}")


def check_same_recipe(accelerator: Accelerator, resolved_recipe: str) -> None:
    """Refuse to train when the processes (say, on two machines) resolved different recipes."""
    if accelerator.num_processes == 1:
        return
    digest = hashlib.sha256(resolved_recipe.encode("utf-8")).hexdigest()
    digests = gather_object([digest])
    if len(set(digests)) > 1:
        differing = [rank for rank, other in enumerate(digests) if other != digests[0]]
        raise HftkError(
            f"the processes resolved different recipes (ranks {differing} differ from rank 0): "
            "give every node the same recipe file and --set options"
        )
