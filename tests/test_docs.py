"""The documentation site builds, its generated references match the code, and the front page stays a front page.

The command blocks of README.md and docs/ run in tests/test_readme.py.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "tools" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_references_are_fresh():
    generator = load_generator()
    stale = generator.stale_pages()
    assert not stale, f"{', '.join(stale)} differ from what the code generates: run `{generator.COMMAND}` and commit the result"


def test_every_recipe_key_is_described():
    """The recipe reference and `hftk recipes show --explain` say what every key means: no key without a description."""
    from hftk.recipe.keys import recipe_keys

    generator = load_generator()
    recipe_schemas, (pipeline, _) = generator.schemas()
    undescribed = sorted({key.path for schema, _ in [*recipe_schemas, (pipeline, [])] for key in recipe_keys(schema) if not key.description})
    assert not undescribed, f"recipe keys without Field(description=...): {', '.join(undescribed)}"


def test_the_site_builds_strictly(tmp_path):
    """mkdocs --strict: a broken link, a missing anchor or a page left out of the navigation fails."""
    pytest.importorskip("mkdocs")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    # the offline plugin writes page.html (no directory URLs), so the site reads from file://
    assert (tmp_path / "site" / "reference" / "cli.html").is_file()
    assert (tmp_path / "site" / "results" / "RESULTS-speed.html").is_file()


def heading_anchors(page: Path) -> set[str]:
    """The ids mkdocs' toc extension gives the page's headings."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", page.read_text(encoding="utf-8"), flags=re.M):
        text = re.sub(r"[`*]", "", heading).strip().lower()
        text = re.sub(r"[^\w\s-]", "", text)
        anchors.add(re.sub(r"[\s]+", "-", text).strip("-"))
    return anchors


def test_readme_is_a_front_page_with_working_links():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    links = re.findall(r"\]\(([^)]+)\)", text)
    local = [link for link in links if not link.startswith(("http://", "https://", "#"))]
    assert len(local) >= 20, local  # the front page links into the guides and results
    for link in local:
        target, _, anchor = link.partition("#")
        path = ROOT / target
        assert path.exists(), f"README.md links to {target}, which does not exist"
        if anchor:
            assert anchor in heading_anchors(path), f"README.md links to {link}: {target} has no heading #{anchor}"
    # No dated measurements on the front page: figures live in benchmarks/RESULTS-*.md.
    assert not re.search(r"20\d\d-\d\d-\d\d", text), "README.md holds a date: move measurements to benchmarks/RESULTS-*.md"


def test_results_files_name_their_conditions():
    """Every results file the README moved out says how its figures were made."""
    for name in ("default-job", "speed", "quality-shared", "translation", "compression", "electra",
                 "training-options", "transformers-versions", "distributed"):
        text = (ROOT / "benchmarks" / f"RESULTS-{name}.md").read_text(encoding="utf-8")
        for field in ("command", "machine", "load", "date", "commit"):
            assert re.search(rf"^\| {field}s? \|", text, flags=re.M), f"RESULTS-{name}.md has no {field} row"
