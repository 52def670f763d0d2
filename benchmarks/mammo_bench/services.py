"""The device's services as a clinic runs them, for the benchmarks that time a whole path: each its own process
(``mammo-edge <command> --config ...``), ready when its log says so, stopped with SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TypeVar

from edge_app.config import IngestSection
from edge_app.errors import MeasurementError

POLL_SECONDS = 0.02
WAIT_SECONDS = 300.0
READY_LINES = {  # what each command logs once it serves
    "run": "ready:",
    "serve": "serving the web app",
    "dicom-listen": "listening as",
    "dicom-forward": "",  # it has nothing to wait for: started is ready
}
T = TypeVar("T")


def wait_until(condition: Callable[[], T], what: str, timeout: float = WAIT_SECONDS) -> T:
    """`condition`'s first true answer, asked every 20 ms; a MeasurementError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(POLL_SECONDS)
    raise MeasurementError(f"timed out waiting for {what}")


def write_device_config(
    root: Path, bundle: Path, variant: str, threads: int, ingest: IngestSection, sections: str
) -> Path:
    """``root/config.toml`` for a device over fresh folders under `root`: the model, the paths, `ingest`'s settle,
    region-file wait and rescan, then `sections` (TOML of the services the benchmark runs)."""
    folders = {name: root / name for name in ("inbox", "results", "archive", "quarantine", "state", "outbox")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    paths = "\n".join(f'{name} = "{folder}"' for name, folder in folders.items())
    config = root / "config.toml"
    config.write_text(
        f'[model]\nbundle = "{bundle}"\nvariant = "{variant}"\nthreads = {threads}\n\n[paths]\n{paths}\n\n'
        f"[ingest]\nsettle_seconds = {ingest.settle_seconds}\nsidecar_wait = {ingest.sidecar_wait}\n"
        f"rescan_seconds = {ingest.rescan_seconds}\n\n{sections}"
    )
    return config


def _logged(log: Path, line: str) -> bool:
    return line in log.read_text()


@contextmanager
def device_services(config: Path, logs: Path, commands: tuple[str, ...]) -> Iterator[None]:
    """`commands` (names of ``mammo-edge`` commands) started over `config`, each logging to ``logs/<command>.log``,
    and ready; stopped with SIGTERM when the block ends."""
    logs.mkdir(parents=True, exist_ok=True)
    processes = []
    try:
        for command in commands:
            log = (logs / f"{command}.log").open("w")
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "edge_app.cli", command, "--config", str(config)], stdout=log, stderr=log
                )
            )
        for command in commands:
            wait_until(partial(_logged, logs / f"{command}.log", READY_LINES[command]), f"`mammo-edge {command}`")
        yield
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(60)
