"""Run one of transformers' example scripts with `evaluate.load` pointed at hftk's shipped metrics.

    python tests/examples/run_example.py run_glue.py --model_name_or_path runs/x --trust_remote_code ...

The scripts call `evaluate.load("glue", ...)`, which resolves the name on the Hub; offline that
fails. Only names hftk ships are redirected, to the metric's folder inside the installed hftk
package (what `hftk.metrics.load_metric` loads); anything else goes to `evaluate.load` unchanged.
The script then runs as `__main__`, as `python run_glue.py` would.

The wrapper does not import hftk: that would register its model types with the Auto classes, and
the scripts must load the run folders as any transformers user does, through `--trust_remote_code`.
(hftk's metric modules import `hftk.errors`, but the scripts load their metric after the model.)
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
from pathlib import Path

import evaluate

HERE = Path(__file__).resolve().parent
# find_spec locates the package without executing hftk/__init__.py.
METRICS_DIR = Path(importlib.util.find_spec("hftk").origin).parent / "metrics"
_hub_load = evaluate.load


def offline_load(path: str, config_name: str | None = None, **kwargs):
    """`evaluate.load` that serves hftk's copy of a shipped metric instead of the Hub's."""
    local = METRICS_DIR / path / f"{path}.py"
    if "/" not in path and local.is_file():
        return _hub_load(str(local.parent), config_name, **kwargs)
    return _hub_load(path, config_name, **kwargs)


def main() -> None:
    script = HERE / sys.argv[1]
    evaluate.load = offline_load
    sys.argv = [str(script), *sys.argv[2:]]
    sys.path.insert(0, str(HERE))  # run_qa.py imports utils_qa / trainer_qa from beside it
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
