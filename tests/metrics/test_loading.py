"""hftk.metrics.load_metric: finds the shipped modules, refuses unknown names, never uses the network."""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import evaluate
import pytest

from hftk.errors import HftkError
from hftk.metrics import METRICS_DIR, available_metrics, load_metric

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ["accuracy", "bleu", "chrf", "f1", "glue", "rouge", "seqeval", "squad", "squad_v2"]


def test_available_metrics_lists_the_shipped_modules():
    assert available_metrics() == SHIPPED
    for name in SHIPPED:
        # evaluate only loads a directory whose script is named like it.
        assert (METRICS_DIR / name / f"{name}.py").is_file()


def test_unknown_name_raises_hftk_error_listing_the_available_ones():
    with pytest.raises(HftkError) as excinfo:
        load_metric("bertscore")
    message = str(excinfo.value)
    assert "'bertscore'" in message
    for name in SHIPPED:
        assert name in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "config_name"),
    [("glue", "mrpc"), ("accuracy", None), ("f1", None), ("squad", None), ("squad_v2", None),
     ("seqeval", None), ("rouge", None), ("bleu", None), ("chrf", None)],
)
def test_every_module_loads_with_the_network_blocked(monkeypatch, name, config_name):
    """Whatever HF_HUB_OFFLINE says, loading must not open a connection (nor wait on one)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"load_metric({name!r}) tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    metric = load_metric(name, config_name, keep_in_memory=True)
    assert isinstance(metric, evaluate.Metric)
    assert metric.name == name
    assert metric.citation.strip() and metric.description.strip()


_SCRIPT = textwrap.dedent(
    """
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network used")

    socket.socket.connect = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse

    from hftk.metrics import load_metric

    print(load_metric("glue", "mrpc").compute(predictions=[1, 0, 1, 1], references=[1, 1, 0, 1]))
    """
)


def test_loads_and_computes_in_fresh_processes_with_and_without_hf_hub_offline():
    """evaluate reads HF_HUB_OFFLINE at import time, hence one fresh interpreter per setting.

    Both run at once (each spends ~7 s importing evaluate, which imports transformers).
    """
    base_env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_EVALUATE_OFFLINE")}
    base_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), base_env.get("PYTHONPATH")]))
    processes = {
        setting: subprocess.Popen(
            [sys.executable, "-c", _SCRIPT],
            env=dict(base_env, **extra),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for setting, extra in [("HF_HUB_OFFLINE=1", {"HF_HUB_OFFLINE": "1"}), ("HF_HUB_OFFLINE unset", {})]
    }
    for setting, process in processes.items():
        try:
            stdout, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"{setting}: loading a metric hung for 2 minutes (waiting on the network?)")
        assert process.returncode == 0, f"{setting}: {stderr}"
        # accuracy 2/4; positive class: TP=2, FP=1, FN=1 -> F1 = 2*2 / (2*2 + 1 + 1) = 2/3
        assert stdout.strip().splitlines()[-1] == "{'accuracy': 0.5, 'f1': 0.6666666666666666}", setting
