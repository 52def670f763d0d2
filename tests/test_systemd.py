"""sd_notify is best effort: a full or vanished notify socket never blocks or crashes the daemon."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from edge_app.systemd import notify


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
