"""`mammo-edge serve` itself, in process: uvicorn on a free loopback port, each step told to systemd (ready, watchdog
pings at the interval systemd asks, stopping), a clean stop by the command's event with the port and the account
store released, and the refusal before anything binds."""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dicomnode import free_port
from notifysocket import notify_socket

from edge_app.config import Config, PathsSection, WebSection
from edge_app.errors import ConfigError
from edge_app.service.health import Heartbeat
from edge_app.web.accounts import AccountStore
from edge_app.web.app import web_folder
from edge_app.web.server import accounts_for, serve

PASSWORD = "correct horse battery"


def _config(tmp_path: Path, **web: object) -> Config:
    paths = PathsSection(*(tmp_path / name for name in ("inbox", "results", "archive", "quarantine", "state", "out")))
    return Config(paths=paths, web=WebSection(**web))  # type: ignore[arg-type]


def test_serve_answers_until_asked_to_stop_and_tells_systemd_each_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config(tmp_path, enabled=True, port=free_port(), session_idle_minutes=5.0, session_max_hours=1.0)
    stopping = threading.Event()
    with notify_socket(tmp_path, monkeypatch, watchdog_usec=600_000) as systemd:  # a ping every 0.3 s
        caplog.set_level(logging.INFO)
        server = threading.Thread(target=serve, args=(config, stopping), name="serve")
        server.start()
        try:
            assert systemd.until("READY=1") == ["READY=1"]
            Heartbeat(config.paths.state).beat()  # the analysis loop, alive
            with urllib.request.urlopen(f"http://127.0.0.1:{config.web.port}/healthz", timeout=10) as response:
                assert response.read().startswith(b"ok: the analysis loop ticked")
                assert response.headers["server"] is None  # no version advertised
            started = time.monotonic()
            pings = systemd.until("WATCHDOG=1") + systemd.until("WATCHDOG=1")
            assert pings == ["WATCHDOG=1", "WATCHDOG=1"] and time.monotonic() - started >= 0.3
        finally:
            stopping.set()
            server.join(timeout=15)
        assert not server.is_alive()
        assert systemd.until("STOPPING=1")[-1] == "STOPPING=1"
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a restarted server binds
        probe.bind(("127.0.0.1", config.web.port))  # nothing listens there any more
    messages = [(record.name, record.getMessage()) for record in caplog.records]
    assert ("edge_app.web.server", f"serving the web app on http://127.0.0.1:{config.web.port}") in messages
    assert ("edge_app.web.server", "no account or token yet: nobody can log in (mammo-edge web-user add NAME)") in (
        messages
    )
    assert not [name for name, _ in messages if name.startswith("uvicorn.access")]  # paths name scans: no access log


def test_the_account_store_lives_in_the_web_folder_with_the_configured_session_limits(tmp_path: Path) -> None:
    config = _config(tmp_path, enabled=True, session_idle_minutes=5.0, session_max_hours=1.0)
    accounts = accounts_for(config)
    try:
        assert (web_folder(config) / "accounts.sqlite3").is_file()
        assert (accounts.idle_seconds, accounts.max_seconds) == (300.0, 3600.0)
    finally:
        accounts.close()


def test_serve_refuses_when_the_web_app_is_off_and_binds_nothing(tmp_path: Path) -> None:
    config = _config(tmp_path, enabled=False, port=free_port())
    refusal = r"^\[web\] enabled is false: the web app is off \(set it to true to serve\)$"
    with pytest.raises(ConfigError, match=refusal):
        serve(config, threading.Event())
    assert not web_folder(config).exists()


def test_serve_hands_uvicorn_its_address_certificate_and_no_access_log_or_server_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the server is built with: the configured address, port and certificate, no access log (paths name
    scans), no Server header, no proxy headers believed, no lifespan."""
    import edge_app.web.server as server_module

    built: dict[str, object] = {}

    class BuiltError(Exception):
        """Raised once the settings are made: nothing is served."""

    def settings(app: Any, **arguments: object) -> None:
        built.update(arguments, accounts=app.state.accounts)
        raise BuiltError

    monkeypatch.setattr(server_module.uvicorn, "Config", settings)
    tls = {"tls_cert": str(tmp_path / "cert.pem"), "tls_key": str(tmp_path / "key.pem")}
    config = _config(tmp_path, enabled=True, bind_address="10.0.0.5", port=8443, **tls)
    with pytest.raises(BuiltError):
        serve(config, threading.Event())
    accounts = built.pop("accounts")
    assert isinstance(accounts, AccountStore) and accounts.users() == []
    assert built == {
        "host": "10.0.0.5",
        "port": 8443,
        "ssl_certfile": tls["tls_cert"],
        "ssl_keyfile": tls["tls_key"],
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "proxy_headers": False,
        "lifespan": "off",
    }
    built.clear()
    with pytest.raises(BuiltError):
        serve(_config(tmp_path, enabled=True, port=8080), threading.Event())
    assert (built["host"], built["ssl_certfile"], built["ssl_keyfile"]) == ("127.0.0.1", None, None)


def test_serve_warns_only_when_nobody_could_log_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No account and no token: nobody can log in, said at the start; an account alone, or a token alone, is
    someone."""
    import edge_app.web.server as server_module

    class BuiltError(Exception):
        """Raised once the settings are made: nothing is served."""

    def settings(app: Any, **arguments: object) -> None:
        raise BuiltError

    monkeypatch.setattr(server_module.uvicorn, "Config", settings)
    warning = "no account or token yet: nobody can log in (mammo-edge web-user add NAME)"
    setups: dict[str, Callable[[AccountStore], object]] = {
        "nobody": lambda store: None,
        "a token": lambda store: store.add_token("ris-bridge"),
        "an account": lambda store: store.add_user("reader1", "a long passphrase"),
    }
    for name, setup in setups.items():
        config = _config(tmp_path / name.replace(" ", "-"), enabled=True, port=8080)
        store = accounts_for(config)
        setup(store)
        store.close()
        caplog.clear()
        with pytest.raises(BuiltError):
            serve(config, threading.Event())
        assert (warning in caplog.text) == (name == "nobody"), name


def test_given_a_certificate_the_app_is_served_over_https_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    subprocess.run([*request, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    config = _config(tmp_path, enabled=True, port=free_port(), tls_cert=str(cert), tls_key=str(key))
    caplog.set_level(logging.INFO, logger="edge_app.web.server")
    stopping = threading.Event()
    with notify_socket(tmp_path, monkeypatch, watchdog_usec=60_000_000) as systemd:
        server = threading.Thread(target=serve, args=(config, stopping), name="serve")
        server.start()
        try:
            assert systemd.until("READY=1") == ["READY=1"]
            context = ssl.create_default_context(cafile=str(cert))
            context.check_hostname = False  # the certificate names the address, not a host name
            url = f"https://127.0.0.1:{config.web.port}/healthz"
            Heartbeat(config.paths.state).beat()
            with urllib.request.urlopen(url, timeout=10, context=context) as response:
                assert response.read().startswith(b"ok: ")
        finally:
            stopping.set()
            server.join(timeout=15)
    assert f"serving the web app on https://127.0.0.1:{config.web.port}" in caplog.messages
