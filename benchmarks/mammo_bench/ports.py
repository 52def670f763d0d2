"""Local TCP ports for the servers a benchmark or a test starts: a free one, and waiting until one listens."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from typing import Any


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20, process: subprocess.Popen[Any] | None = None) -> None:
    """Until something listens on `port`; when `process` is what should listen, its exit ends the wait at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process that should listen on port {port} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")
