"""The device core (and the device benchmarks) never import TensorFlow: checked where it is installed and where it is
not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EDGE_MODULES = [
    "edge_app.cli",
    "edge_app.daemon",
    "edge_app.model",
    "edge_app.probe",
    "benchmarks.cli",
    "benchmarks.latency",
    "benchmarks.pipeline",
    "benchmarks.daemon_bench",
    "benchmarks.autotune",
    "benchmarks.memory",
    "benchmarks.scans",
]
PROBE = (
    "import importlib, sys\n"
    f"for name in {EDGE_MODULES!r}: importlib.import_module(name)\n"
    "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))\n"
    "print('HEAVY:' + ','.join(heavy))\n"
)


def _probe(python: str) -> str:
    result = subprocess.run([python, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_edge_app_does_not_import_tensorflow_even_when_installed() -> None:
    pytest.importorskip("tensorflow", reason="this check needs TensorFlow installed to mean something")
    assert _probe(sys.executable) == "HEAVY:"


def test_edge_app_imports_in_an_environment_without_tensorflow() -> None:
    python = os.environ.get("MAMMO_TEST_EDGE_PYTHON")
    if not python:
        pytest.skip("MAMMO_TEST_EDGE_PYTHON (the edge-only venv made by `make test`) is not set")
    missing = subprocess.run([python, "-c", "import tensorflow"], capture_output=True, check=False)
    assert missing.returncode != 0, "the edge venv must not have TensorFlow installed"
    assert _probe(python) == "HEAVY:"
