"""Offline copies of the Hub's evaluate metrics, loaded by path.

`evaluate.load("glue")` resolves a bare name on the Hugging Face Hub, which fails (or waits on
timeouts) without network. hftk ships its own `evaluate.Metric` modules under this package, one
directory per metric (`glue/glue.py`, as evaluate requires), with the same inputs and outputs as
the Hub metrics of the same name, and loads them by absolute path, which never leaves the machine.

    >>> from hftk.metrics import load_metric
    >>> metric = load_metric("glue", "mrpc")
    >>> metric.compute(predictions=[0, 1], references=[0, 1])
    {'accuracy': 1.0, 'f1': 1.0}
"""

from __future__ import annotations

from pathlib import Path

import evaluate

from hftk.errors import HftkError

METRICS_DIR: Path = Path(__file__).resolve().parent

__all__ = ["METRICS_DIR", "available_metrics", "load_metric"]


def available_metrics() -> list[str]:
    """Names accepted by `load_metric`: every `<name>/<name>.py` shipped in `METRICS_DIR`."""
    return sorted(
        child.name
        for child in METRICS_DIR.iterdir()
        if child.is_dir() and (child / f"{child.name}.py").is_file()
    )


def load_metric(name: str, config_name: str | None = None, **kwargs) -> evaluate.EvaluationModule:
    """Load the hftk copy of metric `name` (e.g. `"glue"`, config `"mrpc"`) without the Hub.

    Extra keyword arguments go to `evaluate.load` (`keep_in_memory`, `cache_dir`,
    `experiment_id`, `process_id`, `num_process`, ...).
    """
    names = available_metrics()
    if name not in names:
        raise HftkError(
            f"Unknown metric {name!r}: hftk ships {', '.join(names)}; pick one of those "
            "(hftk loads metrics offline from its own package, not from the Hub)."
        )
    # An absolute path to the directory makes evaluate take its local-script branch, so it
    # neither resolves the name on the Hub nor needs HF_HUB_OFFLINE to be set.
    return evaluate.load(str(METRICS_DIR / name), config_name=config_name, **kwargs)
