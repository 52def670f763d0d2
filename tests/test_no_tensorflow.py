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
    "edge_app.service.daemon",
    "edge_app.model",
    "edge_app.probe",
    "edge_app.dicom.listen",
    "edge_app.dicom.answers",
    "edge_app.dicom.forward",
    "edge_app.dicom.units",
    "mammo_bench.cli",
    "mammo_bench.latency",
    "mammo_bench.pipeline",
    "mammo_bench.daemon_bench",
    "mammo_bench.autotune",
    "mammo_bench.memory",
    "mammo_bench.scans",
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


def test_every_console_script_helps_and_training_tools_refuse_plainly_without_tensorflow(tmp_path: Path) -> None:
    """The edge venv has every console script (one package); each answers --help, and the ones that need
    TensorFlow end with exit 2 and the extra to install, never a traceback."""
    import tomllib

    python = os.environ.get("MAMMO_TEST_EDGE_PYTHON")
    if not python:
        pytest.skip("MAMMO_TEST_EDGE_PYTHON (the edge-only venv made by `make test`) is not set")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    bin_dir = Path(python).parent
    for script in scripts:
        helped = subprocess.run([bin_dir / script, "--help"], cwd=tmp_path, capture_output=True, text=True, check=False)
        assert helped.returncode == 0 and "usage:" in helped.stdout, (script, helped.stderr[-500:])
    for command in (
        ["mammo-train", "--data", "d", "--out", "o"],
        ["mammo-eval", "run"],
        ["mammo-convert", "run", "--out", "b"],
        ["mammo-baseline", "--data", "d", "--out", "o.json"],
    ):
        refused = subprocess.run(
            [bin_dir / command[0], *command[1:]], cwd=tmp_path, capture_output=True, text=True, check=False
        )
        assert refused.returncode == 2, (command, refused.stderr[-500:])
        assert refused.stderr.strip() == (
            f"{command[0]}: this tool needs the train extra (tensorflow, keras not installed): "
            "pip install 'mammo-edge[train]'"
        )
