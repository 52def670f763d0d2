"""Debian's Orthanc in the tests (`mammo_bench.orthanc` starts it): what a test needs to skip without it, and
`tls_front`, HTTPS in front of it as a clinic's reverse proxy puts it (Debian 12's Orthanc 1.10.1 dies of SIGSEGV on
its first HTTPS request when it serves TLS itself)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mammo_bench.orthanc import DICOMWEB_PLUGIN

needs_orthanc = pytest.mark.skipif(
    shutil.which("Orthanc") is None, reason="Debian's orthanc is not installed: `make test` installs it"
)
needs_orthanc_dicomweb = pytest.mark.skipif(
    not DICOMWEB_PLUGIN.exists(), reason="Debian's orthanc-dicomweb is not installed: `make test` installs it"
)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own authority: what a client's CA file names) and its key."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
    request += ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(request, check=True, capture_output=True)
    return cert, key


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for end in (source, sink):
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def tls_front(port: int, cert: Path, key: Path) -> Iterator[int]:
    """HTTPS on the port this yields, passed on to plain HTTP on `port`: the reverse proxy in front of a clinic's
    Orthanc. A client that refuses the certificate ends its connection in the handshake; nothing reaches `port`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stopping = threading.Event()
    open_sockets: list[socket.socket] = []
    pipes: list[threading.Thread] = []

    def serve() -> None:
        while not stopping.is_set():
            try:
                accepted, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.settimeout(None)
            try:
                client = context.wrap_socket(accepted, server_side=True)
            except (ssl.SSLError, OSError):
                accepted.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", port))
            open_sockets.extend((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                pipes.append(threading.Thread(target=_pipe, args=(source, sink), name="tls front pipe"))
                pipes[-1].start()

    acceptor = threading.Thread(target=serve, name="tls front")
    acceptor.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stopping.set()
        acceptor.join(timeout=10)
        listener.close()
        for end in open_sockets:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()
        for pipe in pipes:
            pipe.join(timeout=10)
