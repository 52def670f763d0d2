"""The DICOM node under test: a listener on a free local port in a thread, dcmtk's tools, a storescp destination."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from edge_app.config import Config, DicomSection, PathsSection
from edge_app.dicom.listen import StorageListener
from edge_app.service.daemon import journal_path
from mammo_bench.ports import free_port, wait_for_port

SENDER = "MODALITY"
needs_dcmtk = pytest.mark.skipif(
    shutil.which("storescu") is None or shutil.which("storescp") is None,
    reason="dcmtk (echoscu, storescu, storescp) is not installed: `make test` installs it",
)


def node_config(root: Path, **dicom: Any) -> Config:
    paths = PathsSection(
        **{name: root / name for name in ("inbox", "results", "archive", "quarantine", "state", "outbox")}
    )
    settings = {"enabled": True, "port": free_port(), "bind_address": "127.0.0.1", "allowed_ae_titles": (SENDER,)}
    return replace(Config(), paths=paths, dicom=replace(DicomSection(), **{**settings, **dicom}))


@dataclass
class Listening:
    config: Config
    listener: StorageListener

    @property
    def port(self) -> int:
        return self.config.dicom.port

    @property
    def inbox(self) -> Path:
        return self.config.paths.inbox


@contextlib.contextmanager
def listening(config: Config) -> Iterator[Listening]:
    """The listener serving in a thread until the block ends."""
    listener = StorageListener(config.dicom, config.paths.inbox, journal_path(config))
    stopping = threading.Event()
    thread = threading.Thread(target=listener.serve, args=(stopping,), name="listener")
    thread.start()
    try:
        wait_for_port(config.dicom.port)
        yield Listening(config, listener)
    finally:
        stopping.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the listener did not stop"


def storescu(
    port: int, *files: Path, calling: str = SENDER, options: tuple[str, ...] = (), called: str = "MAMMO_EDGE"
) -> subprocess.CompletedProcess[str]:
    """dcmtk's storescu, all files in one association, proposing only what the files need (`-R`), in the
    transfer syntaxes `options` name (uncompressed by default)."""
    command = ["storescu", "-aet", calling, "-aec", called, "-R", *options, "127.0.0.1", str(port)]
    command += [str(path) for path in files]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


def echoscu(port: int, calling: str = SENDER) -> subprocess.CompletedProcess[str]:
    command = ["echoscu", "-aet", calling, "-aec", "MAMMO_EDGE", "127.0.0.1", str(port)]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)


@contextlib.contextmanager
def storescp(folder: Path, port: int, *options: str) -> Iterator[subprocess.Popen[str]]:
    """dcmtk's storescp (AE title PACS) writing what it receives into `folder` (where answers are forwarded)."""
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        ["storescp", "-aet", "PACS", *options, "-od", str(folder), "-uf", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, process=process)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)
