"""Power loss, where it can be simulated without a block device of our own: the order of the service's writes,
syncs, renames and journal commits is recorded while scans go through the real pipeline, and checked against what a
power cut keeps (only what was fsynced; a rename only once its folder was fsynced). The journal is SQLite in WAL mode
with ``synchronous=FULL``: a commit is on disk when it returns. The rules:

- nothing is renamed to a final name before its data was fsynced (else the name survives, its data does not);
- no journal commit follows a rename or a write that is not yet durable (else, after the cut, the journal says a
  step happened whose result is gone, and recovery skips it: the scan would be lost);
- at the end of each scan nothing is left unsynced.

A cut at every point between two recorded operations is then a crash the lifecycle tests already recover from
(`test_lifecycle.py`, a stop before and after every journal move). A torn last audit line is rewritten whole
(`test_audit.py`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from corpus import ROI, patch, png
from harness import config_under, distinct_scan, fake_analyser

from edge_app import fsutil
from edge_app.service.daemon import build_pipeline, journal_path
from edge_app.service.journal import Journal
from edge_app.service.lifecycle import THUMBS, ScanState

pytestmark = pytest.mark.usefixtures("fake_runtime")  # the service around the model, on the fake model


class DurabilityRecorder:
    """Files written but not fsynced, renames whose folder was not fsynced, and every violation of the rules."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dirty_files: set[str] = set()
        self.unsynced_folders: set[str] = set()
        self.violations: list[str] = []
        self.operations = 0

    def _ours(self, path: object) -> str | None:
        """The path if it is the service's and must survive a power cut (a thumbnail is a cache, made again)."""
        text = os.path.realpath(os.fsdecode(path))  # type: ignore[arg-type]
        cache = f"{os.sep}{THUMBS}{os.sep}" in text
        return text if text.startswith(str(self.root)) and not cache else None

    def opened_for_writing(self, path: object) -> None:
        if (ours := self._ours(path)) is not None:
            self.dirty_files.add(ours)

    def fsynced(self, descriptor: int) -> None:
        path = os.readlink(f"/proc/self/fd/{descriptor}")
        self.operations += 1
        if os.path.isdir(path):
            self.unsynced_folders.discard(path)
        else:
            self.dirty_files.discard(path)

    def renamed(self, source: object, target: object) -> None:
        self.operations += 1
        source_path, target_path = self._ours(source), self._ours(target)
        if source_path is None or target_path is None:
            return
        if source_path in self.dirty_files:
            self.violations.append(f"{target_path} took the name of unsynced data")
        self.dirty_files.discard(source_path)
        self.unsynced_folders.update({os.path.dirname(source_path), os.path.dirname(target_path)})

    def committed(self, what: str) -> None:
        self.operations += 1
        pending = sorted(self.dirty_files | self.unsynced_folders)
        if pending:
            self.violations.append(f"journal {what} while not durable: {pending}")


@pytest.fixture
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DurabilityRecorder:
    recording = DurabilityRecorder(tmp_path.resolve())
    real_open, real_fsync, real_replace, real_rename = Path.open, os.fsync, os.replace, os.rename

    def path_open(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(flag in mode for flag in "wax+"):
            recording.opened_for_writing(self)
        return real_open(self, mode, *args, **kwargs)

    def fsync(descriptor: int) -> None:
        real_fsync(descriptor)
        recording.fsynced(descriptor)

    def replace(source: Any, target: Any) -> None:
        real_replace(source, target)
        recording.renamed(source, target)

    def rename(source: Any, target: Any) -> None:
        real_rename(source, target)
        recording.renamed(source, target)

    monkeypatch.setattr(Path, "open", path_open)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)
    for method in ("insert", "advance"):
        real = getattr(Journal, method)

        def committing(self: Journal, *args: Any, _real: Any = real, _name: str = method, **kwargs: Any) -> Any:
            recording.committed(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(Journal, method, committing)
    return recording


def test_every_write_is_durable_before_the_journal_says_it_happened(
    tmp_path: Path, recorder: DurabilityRecorder
) -> None:
    config = config_under(tmp_path / "device")
    pipeline = build_pipeline(config, Journal(journal_path(config)), fake_analyser(tmp_path))
    drops = {"good.png": png(patch()), "refused.png": b"not an image", "paired.png": png(patch())}
    (config.paths.inbox / "paired.roi.json").write_bytes(ROI)
    for name, data in drops.items():
        (config.paths.inbox / name).write_bytes(data)
        recorder.dirty_files.clear()  # the test's own drop, not the service's
        sidecar = config.paths.inbox / "paired.roi.json" if name == "paired.png" else None
        record = pipeline.take(config.paths.inbox / name, sidecar)
        assert record.state.final
        recorder.committed(f"{name} finished")  # whatever comes next must find this scan durable
    assert recorder.operations > 40, "the recorder saw too little to judge"
    assert recorder.violations == []


def test_a_batch_keeps_the_rules_and_syncs_each_folder_once_per_step(
    tmp_path: Path, recorder: DurabilityRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's way: arrivals claimed together, each analysed, then recorded, written and settled together. The
    rules hold with every step's journal moves in one commit, and the folders are fsynced once per step, not once per
    scan (what a backlog on an SD card pays for)."""
    config = config_under(tmp_path / "device")
    pipeline = build_pipeline(config, Journal(journal_path(config)), fake_analyser(tmp_path))
    scans = [distinct_scan(index) for index in range(5)] + [b"not an image"]
    for index, data in enumerate(scans):
        (config.paths.inbox / f"scan{index}.png").write_bytes(data)
    recorder.dirty_files.clear()  # the test's own drops
    synced: list[str] = []
    real_fsync_dir = fsutil.fsync_dir
    monkeypatch.setattr(fsutil, "fsync_dir", lambda folder: synced.append(str(folder)) or real_fsync_dir(folder))
    arrivals = [(config.paths.inbox / f"scan{index}.png", None) for index in range(len(scans))]
    claimed = pipeline.claim_new(arrivals)
    finished = pipeline.resume_many([(record, pipeline.examine(record)) for record in claimed])
    recorder.committed("the batch finished")
    assert [record.state for record in finished] == [ScanState.ARCHIVED] * 5 + [ScanState.QUARANTINED]
    assert sorted(path.name for path in config.paths.archive.iterdir()) == [f"scan{index}.png" for index in range(5)]
    assert recorder.violations == []
    assert synced.count(str(config.paths.results)) == 1  # six results and error files: one fsync of the folder
    assert synced.count(str(config.paths.archive)) == 1 and synced.count(str(config.paths.inbox)) == 1
