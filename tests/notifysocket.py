"""A socket in systemd's place: what a service in this process tells systemd, message by message."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


class NotifySocket:
    def __init__(self, receiver: socket.socket) -> None:
        self.receiver = receiver

    def until(self, message: str, timeout: float = 30) -> list[str]:
        """Every message up to and including the first that is `message` (a timeout fails the test)."""
        received: list[str] = []
        deadline = time.monotonic() + timeout
        while message not in received:
            self.receiver.settimeout(max(0.01, deadline - time.monotonic()))
            received.append(self.receiver.recv(4096).decode())
        return received


@contextlib.contextmanager
def notify_socket(folder: Path, monkeypatch: pytest.MonkeyPatch, watchdog_usec: int) -> Iterator[NotifySocket]:
    """``NOTIFY_SOCKET`` and a watchdog of `watchdog_usec` for this process, as systemd sets them for a service."""
    folder.mkdir(parents=True, exist_ok=True)
    address = folder / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(address))
        monkeypatch.setenv("NOTIFY_SOCKET", str(address))
        monkeypatch.setenv("WATCHDOG_USEC", str(watchdog_usec))
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        yield NotifySocket(receiver)
