"""sd_notify is best effort: a full or vanished notify socket never blocks or crashes the daemon."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from edge_app.systemd import notify, watchdog_interval


def test_a_notify_socket_nobody_reads_never_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(address))
        monkeypatch.setenv("NOTIFY_SOCKET", str(address))
        sent = [notify(f"STATUS={index} classified") for index in range(100)]  # the kernel queues about 10
        assert sent[0] is True and sent[-1] is False  # the rest dropped, not waited for
        assert receiver.recv(4096) == b"STATUS=0 classified"


def test_a_vanished_or_absent_notify_socket_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert notify("STOPPING=1") is False
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert notify("READY=1") is False


def test_a_notification_reaches_the_socket_by_path_or_abstract_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(tmp_path / "notify.sock"))
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
        assert notify("READY=1") is True and receiver.recv(4096) == b"READY=1"
    name = f"mammo-edge-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)  # what systemd's "@name" means
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("STOPPING=1") is True and receiver.recv(4096) == b"STOPPING=1"


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "3000000"}, 1.5),  # half of systemd's WatchdogSec
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "SELF"}, 1.5),
    ],
)
def test_the_watchdog_interval_is_half_of_what_systemd_asks(
    environ: dict[str, str], interval: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, str(os.getpid()) if value == "SELF" else value)
    assert watchdog_interval() == interval
