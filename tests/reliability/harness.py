"""What the reliability tests share: the daemon in a thread of the test process (the real intake, pipeline, writer and
settler, the real `ModelAnalyser` on the fake model of tests/fakemodel.py), a record of every file the process opens,
and the figures each test reports.

Figures: a test calls `report(name, values)`; with ``MAMMO_RELIABILITY_OUT=DIR`` they are written to
``DIR/<name>.json`` (how ``benchmarks/results/reliability/`` was made: see docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from conftest import FOLDERS, REPO, write_daemon_config
from corpus import patch, png
from fakemodel import write_fake_bundle

from edge_app.config import Config, IngestSection, PathsSection
from edge_app.model import EdgeModel
from edge_app.scope import ScopeLimits
from edge_app.service.analyse import Analyser, ModelAnalyser
from edge_app.service.daemon import Daemon, journal_path
from edge_app.service.journal import Journal
from edge_app.service.lifecycle import ScanRecord

SERVICE = Path(__file__).with_name("fake_service.py")
"""``python SERVICE ARGS``: the real ``mammo-edge ARGS`` process on the fake model."""


def distinct_scan(index: int) -> bytes:
    """A 48 px patch (in the fake model's scope) that differs for every index, so none is a duplicate."""
    pixels = patch()
    pixels[index % 48, (index // 48) % 48] = 255 - index % 200
    pixels[0, 0] = index % 251
    return png(pixels)


def service_config(root: Path) -> Path:
    """A config file for the service process over fresh folders under `root`, on a fake bundle."""
    return write_daemon_config(
        root, write_fake_bundle(root / "bundle"), variant="float32", settle=0.2, sidecar_wait=0.3
    )


def config_under(root: Path, **ingest: Any) -> Config:
    """Fresh folders under `root`; a flat inbox, fast settling and rescans, no free-space floor (the tests' disk is
    shared), no wait for sidecars unless asked."""
    folders = {name: root / name for name in FOLDERS}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "settle_seconds": 0.3,
        "rescan_seconds": 0.5,
        "min_free_mb": 0,
        "max_pixels": 1_000_000,
        "sidecar_wait": 0.0,
        **ingest,
    }
    return Config(paths=PathsSection(**folders), ingest=replace(IngestSection(), **settings))


def fake_analyser(root: Path, max_pixels: int = 1_000_000) -> ModelAnalyser:
    """The real analyser over the fake bundle (48 px patches); the caller has the fake runtime patched in."""
    model = EdgeModel.load(write_fake_bundle(root / "bundle"), variant="float32")
    return ModelAnalyser(model, max_pixels, ScopeLimits.resolve(model.manifest.scope))


class RunningDaemon:
    """A `Daemon` running in a thread; `stop` ends it the way SIGTERM does and joins it."""

    def __init__(self, config: Config, analyser: Analyser, **options: Any) -> None:
        self.config = config
        self.stopping = threading.Event()
        self.daemon = Daemon(config, analyser, stopping=self.stopping, **options)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="daemon-under-test")

    def _run(self) -> None:
        try:
            self.daemon.run()
        except BaseException as exc:  # the test asserts on it
            self.error = exc
            raise

    def start(self) -> RunningDaemon:
        self.thread.start()
        if not self.daemon.ready.wait(30):
            raise AssertionError(f"the daemon did not get ready: {self.error!r}")
        return self

    def wait_for(self, condition: Callable[[], bool], timeout: float = 60.0, what: str = "the daemon") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.error is None, f"the daemon failed: {self.error!r}"
            assert self.thread.is_alive(), "the daemon stopped by itself"
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the daemon did not stop within 60 s"
        assert self.error is None, f"the daemon failed: {self.error!r}"


@contextmanager
def running(config: Config, analyser: Analyser, **options: Any) -> Iterator[RunningDaemon]:
    daemon = RunningDaemon(config, analyser, **options).start()
    try:
        yield daemon
    finally:
        if daemon.thread.is_alive():
            daemon.stop()


def records(config: Config) -> list[ScanRecord]:
    """Every record of the journal, oldest first (a second connection: SQLite's WAL lets it read while the daemon
    writes)."""
    journal = Journal(journal_path(config))
    try:
        return list(journal.since(0.0))
    finally:
        journal.close()


def report(name: str, values: dict[str, Any]) -> None:
    out = os.environ.get("MAMMO_RELIABILITY_OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"{name}.json").write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")


class OpenedFiles:
    """Every path this process opens while `recording` (Python's ``open`` audit event: `open`, `os.open`, pathlib),
    with whether it was opened for writing. An audit hook cannot be removed, so one is installed for the session and
    records only inside `recording`."""

    _hooked = False
    _active: ClassVar[list[OpenedFiles]] = []

    def __init__(self) -> None:
        self.opened: list[tuple[str, bool]] = []
        if not OpenedFiles._hooked:
            sys.addaudithook(OpenedFiles._hook)
            OpenedFiles._hooked = True

    @staticmethod
    def _hook(event: str, arguments: tuple[Any, ...]) -> None:
        if event != "open" or not OpenedFiles._active:
            return
        path, mode, flags = arguments
        if isinstance(path, int):
            return
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        )
        for recorder in OpenedFiles._active:
            recorder.opened.append((os.fsdecode(path), writing))

    @contextmanager
    def recording(self) -> Iterator[OpenedFiles]:
        OpenedFiles._active.append(self)
        try:
            yield self
        finally:
            OpenedFiles._active.remove(self)

    def outside(self, allowed: tuple[Path, ...]) -> list[tuple[str, bool]]:
        """What was opened outside `allowed` folders (the code's own files, Python's and its packages' are always
        allowed: a first DICOM imports pydicom's modules)."""
        roots = tuple(str(Path(folder).resolve()) for folder in (*allowed, sys.prefix, sys.base_prefix, REPO))
        return [
            (path, writing)
            for path, writing in self.opened
            if not any(str(Path(path).resolve()).startswith(root + os.sep) for root in roots)
        ]
