"""What a run trained and was evaluated on, and the licence its weights can carry, read from its recipe.

The model card needs both for the Hub: `model-index` results must name the data each score was
measured on (a `custom` placeholder tells a reader nothing), and `license` must be something the
training data allows. Everything is derived from the resolved `recipe.yaml` a run folder holds,
so a card regenerated later (e.g. by `hftk push`) says the same.

Licence rule (`output.license` in a recipe always wins):
- pretraining on the corpus shipped with hftk only (Jane Austen's novels, public domain): the
  text puts no condition on the weights, so they take hftk's own licence, Apache-2.0, which the
  modeling code shipped in the folder carries anyway;
- a model trained from another model (fine-tuning, continued pretraining): the base model's
  licence when its card states one (a local folder's README.md, or a Hub card in the local
  cache), since the weights are derived from it;
- anything else (own files, Hub data sets, a base without a stated licence): "other", and the
  card says to check the data's terms and set `output.license`. hftk cannot read a licence off
  a .jsonl file, and claiming one would mislead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

HFTK_LICENSE = "apache-2.0"
UNKNOWN_LICENSE = "other"


@dataclass(frozen=True)
class DataRef:
    """One data set as the card names it: `id` goes into model-index `dataset.type`, `name` is for people."""

    id: str
    name: str
    hub: bool = False  # a Hub data set id, fit for the `datasets:` metadata
    config: str | None = None
    split: str | None = None


AUSTEN = DataRef("austen", "Jane Austen's novels (public domain, shipped with hftk)")


def local_data(paths: list[str] | str) -> DataRef:
    """Local files named by folder and file (`fine_foods/test.jsonl`); the id is the folder or file stem."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    names, ids = [], []
    for raw in paths:
        path = Path(raw)
        parent = path.parent.name
        names.append(f"{parent}/{path.name}" if parent and path.suffix else path.name)
        stem = path.name.split(".")[0]
        ids.append(parent if parent and path.suffix and stem in ("train", "test", "dev", "validation", "valid") else stem)
    return DataRef("+".join(dict.fromkeys(ids)), ", ".join(names) + (" (local files)" if len(names) > 1 else " (local file)"))


def hub_data(name: str, config: str | None = None) -> DataRef:
    return DataRef(name, name + (f" ({config})" if config else ""), hub=True, config=config)


def _with_split(ref: DataRef, split: str, note: str = "") -> DataRef:
    return DataRef(ref.id, ref.name + note, ref.hub, ref.config, split)


def pretrain_data(recipe: dict[str, Any]) -> tuple[list[DataRef], dict[str, DataRef]]:
    """Training data and the data `eval_*` / `perplexity` were measured on, for a pretraining recipe."""
    data = recipe.get("data") or {}
    if data.get("dataset_name"):
        train = hub_data(data["dataset_name"], data.get("dataset_config"))
    elif data.get("train_files"):
        train = local_data(data["train_files"])
    else:
        train = AUSTEN
    if data.get("validation_files"):
        evaluated = _with_split(local_data(data["validation_files"]), "validation")
    else:
        share = data.get("validation_split_percentage")
        evaluated = _with_split(train, "validation", f", held-out {share:g} %" if isinstance(share, (int, float)) else ", held out")
    return [train], {"eval": evaluated}


def finetune_data(recipe: dict[str, Any]) -> tuple[list[DataRef], dict[str, DataRef]]:
    """Training data and the data `eval_*` and `test_*` were measured on, for a fine-tuning recipe."""
    data = recipe.get("data") or {}
    hub = None
    if data.get("dataset_name"):
        hub = hub_data(data["dataset_name"], data.get("dataset_config"))
    elif recipe.get("task") == "glue" and data.get("glue_task"):
        hub = hub_data("nyu-mll/glue", data["glue_task"])
    train = local_data(data["train_file"]) if data.get("train_file") else hub
    evaluated = {}
    if data.get("validation_file"):
        evaluated["eval"] = _with_split(local_data(data["validation_file"]), "validation")
    elif hub is not None:
        evaluated["eval"] = _with_split(hub, "validation")
    if data.get("test_file"):
        evaluated["test"] = _with_split(local_data(data["test_file"]), "test")
    return [train] if train else [], evaluated


def run_data(recipe: dict[str, Any]) -> tuple[list[DataRef], dict[str, DataRef]]:
    """(training data, {metric prefix: evaluated data}) for any hftk recipe; empty without one."""
    if not recipe:
        return [], {}
    return finetune_data(recipe) if "task" in recipe else pretrain_data(recipe)


def base_model_license(base: str | None) -> str | None:
    """The licence a base model's card states: a local folder's README.md, or a cached Hub card."""
    if not base:
        return None
    from huggingface_hub import ModelCard, try_to_load_from_cache

    card_path: Path | str | None = Path(base) / "README.md"
    if not Path(base).is_dir():
        try:
            card_path = try_to_load_from_cache(base, "README.md")
        except Exception:  # not a repo id either: nothing to read, nothing to claim
            card_path = None
    if not isinstance(card_path, (str, Path)) or not Path(card_path).is_file():
        return None
    try:
        license_ = ModelCard.load(card_path, ignore_metadata_errors=True).data.license
    except Exception:  # a broken base card: its licence is unknown, not ours to guess
        return None
    return license_ if isinstance(license_, str) and license_ else None


def default_license(recipe: dict[str, Any], base_model: str | None) -> tuple[str, str]:
    """(licence id, one sentence saying why) when the recipe sets no `output.license`."""
    chosen = (recipe.get("output") or {}).get("license")
    if chosen:
        return chosen, "set by the recipe (`output.license`)."
    base = base_model or (recipe.get("model") or {}).get("name_or_path")
    if base:
        inherited = base_model_license(base)
        if inherited:
            return inherited, f"inherited from the base model `{base}`; check that the training data's terms allow it too."
        return UNKNOWN_LICENSE, (
            f"the base model `{base}` states no licence hftk could read: check its terms and the training data's, "
            "then set `output.license`."
        )
    train, _ = run_data(recipe)
    if recipe and "task" not in recipe and train == [AUSTEN]:
        return HFTK_LICENSE, (
            "the training text (Jane Austen's novels) is in the public domain, so the weights take hftk's own "
            "licence, which also covers the modeling code in this repository."
        )
    return UNKNOWN_LICENSE, "hftk cannot tell the training data's licence: check its terms and set `output.license`."
