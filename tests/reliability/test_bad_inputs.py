"""The whole bad-input corpus (tests/reliability/corpus.py) dropped at once into a running daemon: each kind ends as
its table says, nothing crashes, nothing is lost or answered twice, the daemon keeps serving after it, and no file
outside the configured folders is opened, written, moved or changed."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from corpus import OUTSIDE_FILE, Answered, Kind, Left, Refused, kinds, patch, png
from harness import OpenedFiles, config_under, fake_analyser, records, report, running

from edge_app import fsutil
from edge_app.service.lifecycle import ScanRecord, ScanState

pytestmark = pytest.mark.usefixtures("fake_runtime")  # the service around the model, on the fake model


def _as_root_a_mode_0_file_is_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Root reads any file, so the test grants a mode-000 file the refusal the service user (never root) gets."""
    if os.geteuid() != 0:
        return
    real_open = os.open

    def open_as_service_user(path: object, flags: int, *args: object, **kwargs: object) -> int:
        try:
            mode = os.stat(path, follow_symlinks=False).st_mode  # type: ignore[arg-type]
        except (OSError, TypeError):
            mode = 0o644
        if stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0:
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))  # type: ignore[arg-type]
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fsutil.os, "open", open_as_service_user)


def _fingerprint(path: Path) -> tuple[str, int, int]:
    status = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), status.st_mtime_ns, stat.S_IMODE(status.st_mode)


def test_every_bad_input_ends_as_its_table_says_and_the_daemon_keeps_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as_root_a_mode_0_file_is_unreadable(monkeypatch)
    outside = tmp_path / "outside"  # a stand-in for the rest of the file system, watched like /etc/passwd
    outside.mkdir()
    config = config_under(tmp_path / "device")
    analyser = fake_analyser(tmp_path)
    corpus = kinds(outside)
    assert len(corpus) >= 40 and len({kind.name for kind in corpus}) == len(corpus)
    watched = [OUTSIDE_FILE]
    before = {path: _fingerprint(path) for path in watched}
    opened = OpenedFiles()
    with running(config, analyser) as daemon, opened.recording():
        for kind in corpus:
            kind.drop(config.paths.inbox, kind.name + kind.suffix)
        watched += [path for path in outside.iterdir()]
        before.update({path: _fingerprint(path) for path in watched if path not in before})
        expected = sum(not isinstance(kind.outcome, Left) for kind in corpus)
        daemon.wait_for(lambda: sum(r.state.final for r in records(config)) >= expected, what="the corpus")
        after_corpus = png(patch())
        (config.paths.inbox / "after-the-corpus.png").write_bytes(after_corpus)
        daemon.wait_for((config.paths.results / "after-the-corpus.json").exists, what="a scan after it")
    assert any("/state/processing/" in path for path, _ in opened.opened), "the recorder saw no scan being read"
    assert not opened.outside((tmp_path / "device", tmp_path / "bundle")), "a file outside the folders was opened"
    assert {path: _fingerprint(path) for path in watched} == before, "a file outside the folders changed"

    by_name = {record.input_name: record for record in records(config)}
    table = [_check(kind, config.paths, by_name) for kind in corpus]
    assert by_name["after-the-corpus.png"].state is ScanState.ARCHIVED
    answered = [name for name, record in by_name.items() if record.state is ScanState.ARCHIVED]
    assert len(answered) == len(set(answered)) and len(list(config.paths.results.glob("*.json"))) == len(answered)
    report("bad-inputs", {"kinds": len(corpus), "crashes": 0, "lost": 0, "duplicated": 0, "outcomes": table})


def _check(kind: Kind, paths: object, by_name: dict[str, ScanRecord]) -> dict[str, str]:
    """Assert one kind's outcome; the row of the closing note's table."""
    name = kind.name + kind.suffix
    record = by_name.get(name)
    inbox, results, archive, quarantine = (getattr(paths, f) for f in ("inbox", "results", "archive", "quarantine"))
    outcome = kind.outcome
    if isinstance(outcome, Left):
        gone = "removed" in kind.name
        assert record is None or record.state is ScanState.VANISHED, f"{kind.name}: {record}"
        assert gone or os.path.lexists(inbox / name), f"{kind.name} was not left where it was"
        return {"kind": kind.name, "outcome": "left alone", "why": outcome.why}
    assert record is not None, f"{kind.name} was never taken"
    if isinstance(outcome, Refused):
        assert record.state is ScanState.QUARANTINED and record.failure is not None, f"{kind.name}: {record}"
        assert (record.failure.stage, record.failure.kind) == (outcome.stage, outcome.kind), (
            f"{kind.name}: {record.failure}"
        )
        settled = quarantine / str(record.settled_name)
        error = json.loads(settled.with_name(settled.name + ".error.json").read_text())
        assert error["reason"] == record.failure.reason and len(error["reason"]) > 20
        assert os.path.lexists(settled), f"{kind.name}: the input was not kept"
        return {"kind": kind.name, "outcome": "quarantined", "stage": outcome.stage, "reason": record.failure.reason}
    assert isinstance(outcome, Answered)
    assert record.state is ScanState.ARCHIVED and record.status == outcome.status, f"{kind.name}: {record}"
    result = json.loads((results / str(record.result_file)).read_text())
    assert result["input"] == name and result["status"] == outcome.status
    assert hashlib.sha256((archive / str(record.settled_name)).read_bytes()).hexdigest() == record.sha256
    return {"kind": kind.name, "outcome": outcome.status, "file": str(record.settled_name)[:40]}
