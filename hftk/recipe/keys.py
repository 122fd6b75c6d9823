"""Every key of a recipe schema with its type, default and description, read from the schema itself.

One source for what a key means: `hftk recipes show NAME --explain` prints it beside the
resolved values, and `tools/gen_docs.py` writes the recipe reference page from it, so the
help and the documentation cannot drift apart. Descriptions live in the schemas'
`Field(description=...)` (hftk.recipe.schema, .distill, .pipeline).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

REQUIRED = "(required)"


@dataclasses.dataclass(frozen=True)
class RecipeKey:
    path: str  # dotted, as --set takes it; list items as `finetune[].name`
    type: str
    default: str
    description: str


def _is_section(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel class an annotation holds (directly or as `X | None`), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _list_item_section(annotation: Any) -> type[BaseModel] | None:
    if typing.get_origin(annotation) is list:
        return _is_section(typing.get_args(annotation)[0])
    return None


def type_name(annotation: Any) -> str:
    """`int | None` -> "int or null", `Literal['a', 'b']` -> "one of: a, b", `list[str]` -> "list of str"."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return "one of: " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        named = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(named) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def format_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, (list, dict)) and not value:
        return "[]" if isinstance(value, list) else "{}"
    return str(value)


def _default_instance(field, annotation_section: type[BaseModel]) -> BaseModel | None:
    """The section's default as its parent builds it (FinetuneRecipe's training differs from TrainingSection's)."""
    default = field.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        return default
    try:
        return annotation_section()
    except Exception:  # a section with required keys has no default instance
        return None


def recipe_keys(schema: type[BaseModel], prefix: str = "", defaults: BaseModel | None = None) -> list[RecipeKey]:
    """Every leaf key of `schema`, depth first in declaration order."""
    keys: list[RecipeKey] = []
    for name, field in schema.model_fields.items():
        path = f"{prefix}{name}"
        item = _list_item_section(field.annotation)
        section = None if item is not None else _is_section(field.annotation)
        if section is not None:
            keys += recipe_keys(section, f"{path}.", _default_instance(field, section))
            continue
        if item is not None:
            keys.append(RecipeKey(path, f"list of {item.__name__}", "[]", field.description or ""))
            keys += recipe_keys(item, f"{path}[].", None)
            continue
        if defaults is not None and name in type(defaults).model_fields:
            default = format_value(getattr(defaults, name))
        elif field.default is PydanticUndefined and field.default_factory is None:
            default = REQUIRED
        else:
            default = format_value(field.get_default(call_default_factory=True))
        keys.append(RecipeKey(path, type_name(field.annotation), default, field.description or ""))
    return keys


def flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    """{"training": {"seed": 1}} -> {"training.seed": 1}; mappings under a key stay whole."""
    if not isinstance(values, dict) or not values:
        return {prefix.rstrip("."): values}
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value and not key == "config":
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def explained(schema: type[BaseModel], values: dict[str, Any]) -> str:
    """Resolved values, one `key: value  # type. description` line per key, as `--set` spells the keys."""
    meaning = {key.path: key for key in recipe_keys(schema)}
    lines = []
    for path, value in flatten(values).items():
        key = meaning.get(path)
        note = f"  # {key.type}. {key.description}".rstrip(". ") if key else ""
        shown = json.dumps(value) if value == "" or (isinstance(value, (list, dict)) and value) else format_value(value)
        lines.append(f"{path}: {shown}{note}")
    return "\n".join(lines) + "\n"


def recipe_schema(raw: dict[str, Any]) -> type[BaseModel]:
    """The schema a recipe file's keys belong to: distillation, fine-tuning or pretraining."""
    from hftk.recipe.distill import DistillRecipe
    from hftk.recipe.schema import FinetuneRecipe, PretrainRecipe

    if "task" not in raw:
        return PretrainRecipe
    return DistillRecipe if any(key in raw for key in ("teacher", "student", "augment")) else FinetuneRecipe
