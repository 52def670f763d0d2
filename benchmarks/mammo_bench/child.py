"""Measurements that need a process of their own (a model's own peak RSS, TensorFlow's fixed thread pools).

A child is ``python -m MODULE ARGS...``; it prints its result as JSON on its last stdout line and fails with a
non-zero exit whose last stderr line says why.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from edge_app.errors import MeasurementError


def run_json_child(module: str, args: Sequence[str], what: str) -> dict[str, Any]:
    """Run the child and return its JSON result; a failure raises RuntimeError naming `what` and the child's reason."""
    completed = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        tail = completed.stderr.strip().splitlines()[-1:] or ["no output"]
        raise MeasurementError(f"{what} failed: {tail[0]}")
    lines = completed.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        raise MeasurementError(f"{what} printed no JSON result")
    return result
