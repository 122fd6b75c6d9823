"""The package's layering, read from the source: a lower layer never imports a higher one, no import cycles.

Every `import` counts, deferred ones inside functions included: they tie two files together
as much as a top-level import does. The layers (bottom to top) are the brief's; a module not
listed here fails the test, so a new package has to be placed on purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hftk"

# Bottom to top. A module may import its own layer and the ones below.
LAYERS: list[tuple[str, ...]] = [
    ("hftk", "hftk.models", "hftk.errors", "hftk.shadowing", "hftk.offline"),
    ("hftk.data", "hftk.metrics", "hftk.recipe"),
    ("hftk.training", "hftk.tasks", "hftk.objectives", "hftk.distill", "hftk.lora", "hftk.quantize", "hftk.export"),
    ("hftk.reporting", "hftk.hub"),  # hub writes the model card (reporting) before an upload
    ("hftk.commands",),
    ("hftk.cli", "hftk.console", "hftk.__main__"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """Index of the longest layer prefix that owns `module`."""
    best, best_len = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            owns = module == prefix or (prefix != "hftk" and module.startswith(prefix + "."))
            if owns and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return best


def imports_of(path: Path, known: set[str]) -> dict[str, int]:
    """hftk modules `path` imports (at any depth), each with its first line."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        while target and target not in known:  # `from a.b import c`: c may be a name, not a module
            target = target.rpartition(".")[0]
        if target and target not in (name, "hftk"):
            found.setdefault(target, line)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("hftk."):
                    add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                source = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            if source == "hftk" or source.startswith("hftk."):
                for alias in node.names:
                    add(f"{source}.{alias.name}", node.lineno)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(paths)) for name, path in sorted(paths.items())}


def test_graph_is_read():
    graph = import_graph()
    assert len(graph) > 50 and "hftk.cli" in graph
    assert "hftk.commands.pretrain" in graph["hftk.cli"]  # the reader sees deferred imports


def test_no_import_runs_up_a_layer():
    upward = [
        f"{source} (layer {layer_of(source)}) imports {target} (layer {layer_of(target)}) on line {line}"
        for source, targets in import_graph().items()
        for target, line in targets.items()
        if layer_of(target) > layer_of(source)
    ]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Groups of more than one module that import each other, directly or not (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycles():
    assert strongly_connected(import_graph()) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [({"a": {"b": 1}, "b": {"a": 2}, "c": {"a": 3}}, [["a", "b"]]), ({"a": {"b": 1}, "b": {}}, [])],
)
def test_cycle_finder_finds_a_cycle(graph, expected):
    assert strongly_connected(graph) == expected


def test_layer_of_places_modules():
    assert layer_of("hftk.models.modeling_hftk") == 0
    assert layer_of("hftk.recipe.pipeline") == 1
    assert layer_of("hftk.commands.run") == 4
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("hftk.somewhere_new")
