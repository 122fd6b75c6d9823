"""`hftk recipes list|show`: the recipes that ship with hftk, as shipped, with every key resolved, or explained."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from hftk.recipe.pipeline import Pipeline, load_pipeline
from hftk.recipe import FinetuneRecipe, dump_recipe, load_recipe, read_yaml, recipe_paths, resolve_recipe_path
from hftk.recipe.keys import explained, recipe_schema


def recipe_summaries() -> list[str]:
    """One line per shipped recipe: its name and the first sentence of the file's opening comment."""
    return [f"{name:28s} {first_sentence(path.read_text())}" for name, path in recipe_paths().items()]


def first_sentence(text: str) -> str:
    """The opening comment's first sentence, whole, even where it runs over several comment lines."""
    comment = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        comment.append(line.lstrip("#").strip())
    joined = " ".join(part for part in comment if part)
    end = re.search(r"(?<!e\.g)(?<!i\.e)\.(?=\s+[A-Z(`]|$)", joined)  # not at "e.g." / "i.e."
    return joined[: end.start() + 1] if end else joined


def shipped_text(name_or_path: str | Path) -> str:
    """The recipe file exactly as shipped (or as found at the path)."""
    return resolve_recipe_path(name_or_path).read_text()


def resolved_recipe_yaml(name_or_path: str | Path, overrides: list[str] | None = None) -> str:
    """Every key a run of this recipe (or pipeline) resolves, defaults included, as YAML."""
    path = resolve_recipe_path(name_or_path)
    raw = read_yaml(path)
    header = f"# {path.name} resolved: every key with the value a run uses (defaults included)\n"
    if "pretrain" in raw and "objective" not in raw:  # an `hftk run` pipeline: each stage's recipe
        pipeline = load_pipeline(path, overrides or [])
        stages = {"pretrain": pipeline.pretrain.model_dump(mode="json")}
        stages.update({name: recipe.model_dump(mode="json") for name, recipe in pipeline.finetune.items()})
        body = {"pipeline": pipeline.spec.model_dump(mode="json", include={"output_dir", "baseline", "push"}), "stages": stages}
        return header + yaml.safe_dump(body, sort_keys=False)
    recipe = load_recipe(recipe_schema(raw), path, overrides or [])
    note = ""
    if isinstance(recipe, FinetuneRecipe):
        note = "# data.max_seq_length / doc_stride left null here are derived from the model at run time\n"
    return header + note + dump_recipe(recipe)


def explained_recipe(name_or_path: str, overrides: list[str] | None = None) -> str:
    """`hftk recipes show NAME --explain`: every resolved key with its value, type and meaning (pipelines: per stage)."""
    path = resolve_recipe_path(name_or_path)
    raw = read_yaml(path)
    header = f"# {path.name}: every key a run resolves, with its type and meaning (set any with --set KEY=VALUE)\n"
    if "pretrain" in raw and "objective" not in raw:  # an `hftk run` pipeline: its own keys, then each stage's recipe
        pipeline = load_pipeline(path, overrides or [])
        parts = [header, "\n# the pipeline\n", explained(Pipeline, pipeline.spec.model_dump(mode="json", include={"output_dir", "baseline", "push"}))]
        parts += ["\n# stage pretrain (--set pretrain.KEY=VALUE)\n", explained(type(pipeline.pretrain), pipeline.pretrain.model_dump(mode="json"))]
        for name, recipe in pipeline.finetune.items():
            parts += [f"\n# stage {name} (--set finetune.{name}.KEY=VALUE)\n", explained(type(recipe), recipe.model_dump(mode="json"))]
        return "".join(parts)
    recipe = load_recipe(recipe_schema(raw), path, overrides or [])
    return header + explained(type(recipe), recipe.model_dump(mode="json"))
