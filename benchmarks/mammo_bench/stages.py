"""``mammo-bench stage`` and ``mammo-bench stages``: a multi-step job (``make demo``) that times itself.

``stage --log LOG NAME -- COMMAND...`` runs the command, prints how long it took and appends ``{"stage", "seconds",
"exit_code"}`` to LOG (JSON lines); its exit code is the command's. ``stages LOG [--out FILE.json]`` prints every
stage and the total, and writes them with the machine they ran on: the README's "the demo takes N min" is the
total of a committed file of this kind, never a figure typed by hand.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_app.errors import DataError


def run_stage(log: Path, name: str, command: Sequence[str]) -> int:
    """Run `command`, print and log its wall time; the command's exit code."""
    if not command:
        raise DataError(f"stage {name!r} has no command (put it after --)")
    started = time.monotonic()
    code = subprocess.run(list(command), check=False).returncode
    seconds = time.monotonic() - started
    print(f"[{name}] {seconds:.1f} s" + ("" if code == 0 else f" (exit code {code})"), flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        handle.write(json.dumps({"stage": name, "seconds": round(seconds, 2), "exit_code": code}) + "\n")
    return code


def read_stages(log: Path) -> list[dict[str, Any]]:
    try:
        lines = log.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"no stage log at {log}: {exc.strerror}") from exc
    return [json.loads(line) for line in lines if line.strip()]


def stages_table(stages: list[dict[str, Any]]) -> str:
    width = max([len(stage["stage"]) for stage in stages] + [5])
    lines = [f"{stage['stage']:<{width}}  {stage['seconds']:8.1f} s" for stage in stages]
    total = sum(stage["seconds"] for stage in stages)
    return "\n".join([*lines, f"{'total':<{width}}  {total:8.1f} s ({total / 60:.1f} min)"])


def total_minutes(document: dict[str, Any]) -> int:
    """The total a README quotes: whole minutes, rounded up (a newcomer waits at most that long on such a machine)."""
    return -int(-sum(stage["seconds"] for stage in document["stages"]) // 60)
