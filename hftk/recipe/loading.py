"""Recipe files: shipped names or paths, YAML read, `--set a.b=c` overrides applied, validated in one line per error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from hftk.errors import HftkError
from hftk.recipe.schema import Section, did_you_mean

RECIPES_DIR = Path(__file__).parent.parent / "recipes"


def recipe_paths() -> dict[str, Path]:
    """Shipped recipes by name (file stem)."""
    return {path.stem: path for path in sorted(RECIPES_DIR.glob("*.yaml"))}


def resolve_recipe_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = recipe_paths()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    flag_value = str(name_or_path).lower() in ("true", "false", "yes", "no", "on", "off", "1", "0")
    hint = "; flags such as --resume and --overwrite take no value" if flag_value else ""
    raise HftkError(
        f"recipe {name_or_path} not found: give a YAML file path or one of {', '.join(shipped)} "
        f"(see `hftk recipes list`){hint}"
    )


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise HftkError(f"{path}{where}: YAML syntax error ({problem}); fix the file") from None
    except UnicodeDecodeError:
        raise HftkError(f"{path} is not UTF-8 text; save the recipe as UTF-8 YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise HftkError(f"{path}: a recipe must be a YAML mapping of sections, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides; values are parsed as YAML (numbers, booleans, lists)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise HftkError(f"--set {item!r}: expected KEY=VALUE, e.g. --set training.learning_rate=3e-4")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        value = _yaml11_float(value)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise HftkError(f"--set {key}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def _yaml11_float(value: Any) -> Any:
    """YAML 1.1 reads `3e-4` (no dot) as a string; on the command line everyone means a number."""
    if isinstance(value, str):
        try:
            return float(value) if any(c in value.lower() for c in "e.") and value.strip() else value
        except ValueError:
            return value
    return value


def _section_class(recipe_class: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The recipe section class at `path` (e.g. ("training",) -> TrainingSection), if any."""
    current: Any = recipe_class
    for part in path:
        field = getattr(current, "model_fields", {}).get(str(part))
        if field is None:
            return None
        current = field.annotation
        if isinstance(current, type) and issubclass(current, BaseModel):
            continue
        candidates = [a for a in getattr(current, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return None
        current = candidates[0]
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _blame(key: str, source: str, set_keys: list[str]) -> str:
    """An error on a key given with --set is the command line's, not the recipe file's."""
    for given in set_keys:
        if key == given or key.startswith(given + ".") or given.startswith(key + "."):
            return f"--set {given}"
    return source


def format_validation_error(
    error: ValidationError, source: str, recipe_class: type[BaseModel] | None = None, set_keys: list[str] | None = None
) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    if not key:  # a check across keys: blame a --set key the message names
        message = first["msg"].removeprefix("Value error, ")
        named = [g for g in set_keys or [] if g in message or (g.startswith("model.config.") and g.rsplit(".", 1)[-1] in message)]
        return f"{f'--set {named[0]}' if named else source}: {message}"
    source = _blame(key, source, set_keys or [])
    if first["type"] == "extra_forbidden":
        section = _section_class(recipe_class, tuple(first["loc"][:-1])) if recipe_class is not None else None
        prefix = "".join(f"{part}." for part in first["loc"][:-1])
        suggestion = did_you_mean(str(first["loc"][-1]), section.model_fields, prefix) if section is not None else ""
        return (
            f"{source}: unknown recipe key {key}{suggestion or '; check the spelling'} "
            "(`hftk recipes show NAME --resolved` lists every key)"
        )
    message = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    shown = f" (got {value!r})" if value is not None and not isinstance(value, dict) else ""
    return f"{source}: recipe key {key}: {message}{shown}"


def validate(recipe_class: type[Section], data: dict[str, Any], source: str, set_keys: list[str] | None = None) -> Section:
    try:
        return recipe_class.model_validate(data)
    except ValidationError as error:
        raise HftkError(format_validation_error(error, source, recipe_class, set_keys)) from None


def override_keys(overrides: list[str]) -> list[str]:
    return [item.partition("=")[0].strip() for item in overrides]


def load_recipe(
    recipe_class: type[Section],
    name_or_path: str | Path | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> Section:
    """Read a recipe (file or shipped name), apply overrides, validate."""
    data: dict[str, Any] = dict(base or {})
    source = "recipe"
    if name_or_path is not None:
        path = resolve_recipe_path(name_or_path)
        data = read_yaml(path)
        source = str(path)
    apply_overrides(data, overrides or [])
    return validate(recipe_class, data, source, override_keys(overrides or []))


def dump_recipe(recipe: Section) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)


def flat_config(recipe) -> dict:
    """Recipe as flat scalar key/values, as TensorBoard's hparams want them."""
    flat: dict = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                walk(f"{prefix}.{key}" if prefix else key, child)
        elif isinstance(value, (int, float, str, bool)):
            flat[prefix] = value
        else:
            flat[prefix] = json.dumps(value)

    walk("", recipe.model_dump(mode="json"))
    return flat
