"""sd_notify is best effort: a full or vanished notify socket never blocks or crashes the daemon."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from edge_app import systemd
from edge_app.systemd import notify, restart_service, watchdog_interval


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


def _systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exit_code: int) -> Path:
    """A `systemctl` on PATH that records its arguments and exits with `exit_code`, and systemd "booted"."""
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    calls = tmp_path / "calls"
    script = bin_folder / "systemctl"
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "unit busy" >&2\nexit {exit_code}\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_folder))
    booted = tmp_path / "run-systemd-system"
    booted.mkdir()
    monkeypatch.setattr(systemd, "SYSTEMD_RUNTIME", booted)
    return calls


def test_a_restart_is_a_try_restart_and_says_what_happened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _systemctl(tmp_path, monkeypatch, 0)
    assert restart_service("mammo-edge.service") == "mammo-edge.service restarted if it was running"
    assert calls.read_text() == "try-restart mammo-edge.service\n"


def test_a_failed_restart_names_the_unit_and_systemctls_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _systemctl(tmp_path, monkeypatch, 5)
    assert restart_service("mammo-edge.service") == (
        "systemctl try-restart mammo-edge.service failed (unit busy): the model is linked; restart it by hand"
    )


@pytest.mark.parametrize("missing", ["systemd", "systemctl"])
def test_without_systemd_a_restart_says_what_to_do_and_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    calls = _systemctl(tmp_path, monkeypatch, 0)
    if missing == "systemd":
        monkeypatch.setattr(systemd, "SYSTEMD_RUNTIME", tmp_path / "absent")
    else:
        monkeypatch.setenv("PATH", str(tmp_path / "absent"))
    assert restart_service("unit-x.service") == (
        "systemd is not running here: restart unit-x.service to serve the new model"
    )
    assert not calls.exists()
