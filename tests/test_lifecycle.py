"""The scan lifecycle with a fake analyser (no model, milliseconds): every legal and illegal move, the journal on its
own, odd names round-tripped exactly, and a stop injected at every state (before and after each journal move), from
which recovery must end in exactly one result or quarantine entry."""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fakes import OVERLAY, FakeAnalyser

from edge_app.config import Config, IngestSection, PathsSection
from edge_app.errors import LifecycleError
from edge_app.service.daemon import Daemon, build_pipeline
from edge_app.service.journal import Journal
from edge_app.service.lifecycle import LEGAL_MOVES, Failure, ScanRecord, ScanState, advance, received
from edge_app.service.pipeline import ScanPipeline

ODD_NAMES = [
    "scan__left.png",
    "nested/scan__left.png",
    "with space.png",
    "ünïcødé 乳腺.png",
    "-leading-dash.png",
    "a.b.c.png",
    "deep/er/still/x__y.dcm",
]


def _config(root: Path) -> Config:
    folders = {name: root / name for name in ("inbox", "results", "archive", "quarantine", "state")}
    return Config(
        paths=PathsSection(**folders), ingest=IngestSection(settle_seconds=0.0, recursive=True, sidecar_wait=0.0)
    )


def _pipeline(config: Config, journal: Journal | None = None) -> ScanPipeline:
    return build_pipeline(config, journal or Journal(config.paths.state / "journal.sqlite3"), FakeAnalyser())


def _drop(config: Config, name: str, data: bytes) -> Path:
    path = config.paths.inbox / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _outcomes(config: Config) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Result JSONs, quarantine error JSONs, audit lines."""
    paths = config.paths
    results = [json.loads(p.read_text()) for p in paths.results.glob("*.json")]
    errors = [json.loads(p.read_text()) for p in paths.quarantine.rglob("*.error.json")]
    jsonl = paths.results / "results.jsonl"
    audit = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
    return results, errors, audit


@pytest.mark.parametrize("origin", list(ScanState))
@pytest.mark.parametrize("target", list(ScanState))
def test_only_legal_moves_are_allowed(origin: ScanState, target: ScanState) -> None:
    record = ScanRecord("id", "a.png", origin, 0.0, 0.0)
    if target in LEGAL_MOVES[origin]:
        assert advance(record, target, now=5.0).state is target
    else:
        with pytest.raises(LifecycleError, match=f"{origin.value} -> {target.value} is not a legal move"):
            advance(record, target)


def test_every_state_is_reachable_and_every_path_ends() -> None:
    reachable, frontier = {ScanState.RECEIVED}, [ScanState.RECEIVED]
    while frontier:
        for nxt in LEGAL_MOVES[frontier.pop()] - reachable:
            reachable.add(nxt)
            frontier.append(nxt)
    assert reachable == set(ScanState)
    assert {state for state, moves in LEGAL_MOVES.items() if not moves} == {s for s in ScanState if s.final}


def test_journal_round_trips_every_field_and_prunes_only_old_finished_records(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    record = journal.insert(received("nested/a__b.png", now=100.0))
    claimed = journal.advance(record, ScanState.CLAIMED)
    rejected = journal.advance(
        claimed,
        ScanState.REJECTED,
        sha256="f" * 64,
        settled_name="nested/a__b.png",
        failure=Failure("decode", "K", "r"),
    )
    assert journal.get(record.scan_id) == rejected
    assert journal.unfinished() == [rejected]
    with pytest.raises(LifecycleError):
        journal.advance(rejected, ScanState.ARCHIVED)
    assert journal.get(record.scan_id) == rejected  # a refused move changes nothing
    done = journal.advance(journal.advance(rejected, ScanState.WRITTEN), ScanState.QUARANTINED)
    fresh = journal.insert(received("new.png"))
    assert journal.unfinished() == [fresh]
    assert journal.settled_name_taken("nested/a__b.png") and not journal.settled_name_taken("a__b.png")
    assert journal.prune(retention_days=1, now=done.updated + 86399) == 0
    assert journal.prune(retention_days=1, now=done.updated + 86401) == 1
    assert journal.get(record.scan_id) is None and journal.get(fresh.scan_id) == fresh  # unfinished never pruned
    journal.close()


def test_odd_names_are_reported_archived_and_logged_exactly(tmp_path: Path) -> None:
    config = _config(tmp_path)
    pipeline = _pipeline(config)
    for index, name in enumerate(ODD_NAMES):
        final = pipeline.take(_drop(config, name, f"scan {index}".encode()))
        assert final.state is ScanState.ARCHIVED and final.input_name == name
        assert (config.paths.archive / name).read_bytes() == f"scan {index}".encode()
    bad = pipeline.take(_drop(config, "nested/bad__x.png", b"BAD bytes"))
    assert bad.state is ScanState.QUARANTINED
    results, errors, audit = _outcomes(config)
    assert sorted(r["input"] for r in results) == sorted(ODD_NAMES)
    assert [e["input"] for e in errors] == ["nested/bad__x.png"]
    assert errors[0]["exception"] == "UnsupportedFormatError" and errors[0]["stage"] == "decode"
    assert (config.paths.quarantine / "nested/bad__x.png").read_bytes() == b"BAD bytes"
    assert [a["input"] for a in audit] == [*ODD_NAMES, "nested/bad__x.png"]
    assert [a["status"] for a in audit] == ["classified"] * len(ODD_NAMES) + ["rejected"]
    csv_lines = (config.paths.results / "results.csv").read_text(encoding="utf-8").splitlines()
    assert len(csv_lines) == 1 + len(ODD_NAMES) + 1 and "ünïcødé 乳腺.png" in csv_lines[4]
    assert not list((config.paths.state / "processing").iterdir()) and not list(config.paths.inbox.rglob("*.*"))


def test_same_name_twice_never_overwrites_and_same_content_is_a_duplicate(tmp_path: Path) -> None:
    config = _config(tmp_path)
    pipeline = _pipeline(config)
    first = pipeline.take(_drop(config, "scan.png", b"content"))
    second = pipeline.take(_drop(config, "scan.png", b"content"))
    assert (first.result_stem, first.settled_name, first.duplicate_of) == ("scan", "scan.png", None)
    assert (second.result_stem, second.settled_name, second.duplicate_of) == ("scan (2)", "scan (2).png", "scan.json")
    assert sorted(p.name for p in config.paths.archive.iterdir()) == ["scan (2).png", "scan.png"]
    assert (config.paths.results / "scan (2).gradcam.jpg").read_bytes() == OVERLAY


def test_a_symlink_is_quarantined_unread(tmp_path: Path) -> None:
    config = _config(tmp_path)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"never read")
    config.paths.inbox.mkdir(parents=True)
    (config.paths.inbox / "link.png").symlink_to(secret)
    pipeline = _pipeline(config)
    final = pipeline.take(config.paths.inbox / "link.png")
    assert final.failure == Failure("ingest", "SymbolicLink", final.failure.reason if final.failure else "")
    assert (config.paths.quarantine / "link.png").is_symlink()
    assert pipeline.analyser.calls == 0  # type: ignore[attr-defined]


def test_a_file_taken_away_before_the_claim_vanishes_cleanly(tmp_path: Path) -> None:
    config = _config(tmp_path)
    pipeline = _pipeline(config)
    path = _drop(config, "gone.png", b"x")
    record = pipeline.claimer.receive(path)
    path.unlink()
    assert pipeline.resume(record).state is ScanState.VANISHED
    assert _outcomes(config) == ([], [], [])


class StopInjectedError(Exception):
    """The injected fault: the process 'dies' here."""


class StoppingJournal(Journal):
    """Stops the pipeline right before a move to `state` is made, or right after it is committed (a move made in a
    batch is committed with the batch)."""

    def __init__(self, path: Path, state: ScanState, when: str) -> None:
        super().__init__(path)
        self.state, self.when = state, when
        self._stop_at_commit = False

    @contextmanager
    def batch(self) -> Iterator[None]:
        with super().batch():
            yield
        if self._stop_at_commit:
            raise StopInjectedError

    def _stop_after(self) -> None:
        if self._db.in_transaction:
            self._stop_at_commit = True
        else:
            raise StopInjectedError

    def insert(self, record: ScanRecord) -> ScanRecord:
        stored = super().insert(record)
        if (self.state, self.when) == (ScanState.RECEIVED, "after"):
            self._stop_after()
        return stored

    def advance(self, record: ScanRecord, state: ScanState, **changes: Any) -> ScanRecord:
        if (state, self.when) == (self.state, "before"):
            raise StopInjectedError
        moved = super().advance(record, state, **changes)
        if (state, self.when) == (self.state, "after"):
            self._stop_after()
        return moved


STOPS = (
    [(ScanState.RECEIVED, "after")]
    + [
        (state, when)
        for state in (ScanState.CLAIMED, ScanState.ANALYSED, ScanState.REJECTED, ScanState.WRITTEN)
        for when in ("before", "after")
    ]
    + [(ScanState.ARCHIVED, "before"), (ScanState.QUARANTINED, "before"), (ScanState.VANISHED, "before")]
)


@pytest.mark.parametrize(("state", "when"), STOPS, ids=[f"{when}-{state.value}" for state, when in STOPS])
def test_recovery_from_a_stop_at_every_state_ends_in_exactly_one_outcome(
    tmp_path: Path, state: ScanState, when: str
) -> None:
    config = _config(tmp_path)
    journal_file = config.paths.state / "journal.sqlite3"
    rejected = state in (ScanState.REJECTED, ScanState.QUARANTINED)
    data = b"BAD input" if rejected else b"good input"
    path = _drop(config, "nested/odd__name.png", data)
    sidecar = _drop(config, "nested/odd__name.roi.json", b"A B")  # it travels with its scan through every state
    stopping = _pipeline(config, StoppingJournal(journal_file, state, when))
    if state is ScanState.VANISHED:
        record = stopping.claimer.receive(path, sidecar)
        path.unlink()
        with pytest.raises(StopInjectedError):
            stopping.resume(record)
    else:
        with pytest.raises(StopInjectedError):
            stopping.take(path, sidecar)
    stopping.journal.close()

    recovering = _pipeline(config)  # a new process: a fresh journal connection, a fresh analyser
    recovering.recover()
    recovering.recover()  # recovering twice is recovering once
    results, errors, audit = _outcomes(config)
    finals = list(recovering.journal.since(0))
    assert len(finals) == 1 and finals[0].state.final
    assert not list((config.paths.state / "processing").iterdir()) and not list(config.paths.inbox.rglob("*.png"))
    assert (state is ScanState.VANISHED) == sidecar.exists()
    if state is ScanState.VANISHED:
        assert finals[0].state is ScanState.VANISHED and (results, errors, audit) == ([], [], [])
        assert sidecar.read_bytes() == b"A B"  # left in the inbox, waiting for its scan
    elif rejected:
        assert finals[0].state is ScanState.QUARANTINED and results == [] and len(errors) == len(audit) == 1
        assert (config.paths.quarantine / "nested/odd__name.png").read_bytes() == data
        assert (config.paths.quarantine / "nested/odd__name.roi.json").read_bytes() == b"A B"
    else:
        assert finals[0].state is ScanState.ARCHIVED and errors == [] and len(results) == len(audit) == 1
        assert results[0]["input"] == audit[0]["input"] == "nested/odd__name.png"
        assert [region["label"] for region in results[0]["regions"]] == ["A", "B"]
        assert results[0]["sidecar"] == "nested/odd__name.roi.json"
        assert (config.paths.archive / "nested/odd__name.png").read_bytes() == data
        assert (config.paths.archive / "nested/odd__name.roi.json").read_bytes() == b"A B"
    csv_file = config.paths.results / "results.csv"
    assert (len(csv_file.read_text().splitlines()) if csv_file.exists() else 0) == (
        0 if finals[0].state is ScanState.VANISHED else 2
    )


def test_an_orphan_in_processing_is_adopted_not_lost(tmp_path: Path) -> None:
    config = _config(tmp_path)
    processing = config.paths.state / "processing"
    processing.mkdir(parents=True)
    (processing / "0001__left.png").write_bytes(b"from an older version")
    pipeline = _pipeline(config)
    assert pipeline.recover() == 1
    results, _, _ = _outcomes(config)
    assert [r["input"] for r in results] == ["0001__left.png"]  # named as found, never parsed
    assert (config.paths.archive / "0001__left.png").is_file()


def test_the_daemon_leaks_no_threads_and_keeps_no_per_scan_list(tmp_path: Path) -> None:
    config = _config(tmp_path)
    for index in range(5):
        _drop(config, f"s{index}.png", f"{index}".encode())
    _drop(config, "bad.png", b"BAD")
    _drop(config, "film.dcm", b"FULL film")
    before = set(threading.enumerate())
    daemon = Daemon(config, FakeAnalyser(), exit_when_idle=True)
    summary = daemon.run()
    assert set(threading.enumerate()) - before == set()  # a thread of an earlier test may end meanwhile: no leak
    assert summary.counts == {"archived": 5, "quarantined": 1, "needs_roi": 1}
    collections = {name for name, value in vars(daemon).items() if isinstance(value, (list, dict, set)) and value}
    assert collections == {"counts"} and set(daemon.counts) <= {state.value for state in ScanState} | {"needs_roi"}

    stopping = threading.Event()
    daemon = Daemon(config, FakeAnalyser(), stopping=stopping)
    summaries: list[object] = []
    runner = threading.Thread(target=lambda: summaries.append(daemon.run()))  # built here, run in another thread
    runner.start()
    stopping.set()
    runner.join(30)
    assert not runner.is_alive() and set(threading.enumerate()) - before == set()
    assert len(summaries) == 1, "the daemon's run raised in its thread"


def _wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Poll a state the test can see (never a fixed sleep); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_file_is_ready_only_after_holding_still_for_the_settle_time(tmp_path: Path) -> None:
    from edge_app.service.intake import Arrival, InboxTracker

    clock = FakeClock()
    tracker = InboxTracker(tmp_path, settle_seconds=2.0, recursive=False, limit=10, clock=clock)
    scan = tmp_path / "scan.png"
    scan.write_bytes(b"part one")
    (tmp_path / "copy.png.part").write_bytes(b"in progress")
    tracker.rescan()
    assert tracker.ready() == [] and tracker.pending == 1  # first seen now; the .part name is ignored
    clock.now += 1.9
    assert tracker.ready() == []
    with scan.open("ab") as handle:
        handle.write(b" and two")  # it grew: the settle time starts again
    clock.now += 0.2
    assert tracker.ready() == []
    clock.now += 1.99
    assert tracker.ready() == []
    clock.now += 0.02
    assert tracker.ready() == [Arrival(scan, None)]
    tracker.forget(scan)
    scan.unlink()
    tracker.note(scan)
    assert tracker.ready() == [] and tracker.pending == 0  # a vanished candidate is dropped


def test_the_daemon_sleeps_until_the_next_file_settles_not_a_whole_tick(tmp_path: Path) -> None:
    """The settle time counts from the event that noted the file, and the tracker says when the next one is due, so a
    single file is taken when it settles (drop-to-result = settle + analysis), not at the loop's next tick."""
    from edge_app.service.intake import InboxTracker

    clock = FakeClock()
    tracker = InboxTracker(tmp_path, settle_seconds=2.0, recursive=False, limit=10, clock=clock, sidecar_wait=3.0)
    assert tracker.seconds_until_due() is None  # nothing tracked: the loop's own tick
    scan = tmp_path / "scan.png"
    scan.write_bytes(b"scan")
    tracker.note(scan)  # the watchdog event, at 1000.0
    clock.now += 0.5
    assert tracker.seconds_until_due() == pytest.approx(1.5)  # settles at 1002.0
    clock.now += 1.5
    assert tracker.ready() == []  # settled, but a scan without a sidecar waits for one
    assert tracker.seconds_until_due() == pytest.approx(3.0)  # ... until 1005.0
    clock.now += 3.0
    assert [arrival.scan for arrival in tracker.ready()] == [scan]
    tracker.forget(scan)
    orphan = tmp_path / "orphan.roi.json"  # a sidecar whose scan never comes is never due
    orphan.write_bytes(b"{}")
    tracker.note(orphan)
    clock.now += 10.0
    assert tracker.seconds_until_due() is None


def test_scan_and_sidecar_pair_in_either_order_within_the_wait(tmp_path: Path) -> None:
    from edge_app.service.intake import Arrival, InboxTracker

    clock = FakeClock()
    tracker = InboxTracker(tmp_path, settle_seconds=1.0, recursive=False, limit=10, clock=clock, sidecar_wait=6.0)
    first, first_roi = tmp_path / "first.png", tmp_path / "first.roi.json"
    second, second_roi = tmp_path / "second.dcm", tmp_path / "second.mask.png"
    alone = tmp_path / "alone.png"
    first.write_bytes(b"scan")
    second_roi.write_bytes(b"mask")
    alone.write_bytes(b"scan")
    tracker.rescan()
    assert tracker.ready() == [] and tracker.pending == 2  # a sidecar is never a scan, nor counted as waiting
    clock.now += 5.0  # 5 s later the other halves arrive
    first_roi.write_bytes(b"A")
    second.write_bytes(b"scan")
    tracker.rescan()
    assert tracker.ready() == []
    clock.now += 1.0
    assert sorted(tracker.ready(), key=str) == [Arrival(first, first_roi), Arrival(second, second_roi)]
    clock.now += 0.5  # alone: settled 6.5 s ago, waits 1 + 6 s for a sidecar before it is taken without
    assert Arrival(alone, None) not in tracker.ready()
    clock.now += 0.5
    assert Arrival(alone, None) in tracker.ready()


def test_a_sidecar_suffix_in_capitals_pairs_but_another_scans_does_not(tmp_path: Path) -> None:
    from edge_app.service.intake import Arrival, InboxTracker

    clock = FakeClock()
    tracker = InboxTracker(tmp_path, settle_seconds=1.0, recursive=False, limit=10, clock=clock, sidecar_wait=0.0)
    shouting, shouting_roi = tmp_path / "SHOUT.png", tmp_path / "SHOUT.ROI.JSON"
    other, other_roi = tmp_path / "other.png", tmp_path / "OTHER.roi.json"  # the stem differs: not its sidecar
    for path in (shouting, shouting_roi, other, other_roi):
        path.write_bytes(b"x")
    tracker.rescan()
    tracker.ready()
    clock.now += 1.0
    assert sorted(tracker.ready(), key=str) == [Arrival(shouting, shouting_roi), Arrival(other, None)]


def test_a_backlog_pairs_every_scan_with_its_own_sidecar_and_counts_what_waits(tmp_path: Path) -> None:
    """A backlog (after downtime, a burst) pairs through one index per look: every scan with its own sidecar in
    whatever case, and `pending` counts scans only, as they are taken and as sidecars vanish."""
    from edge_app.service.intake import Arrival, InboxTracker

    clock = FakeClock()
    tracker = InboxTracker(tmp_path, settle_seconds=1.0, recursive=False, limit=1000, clock=clock, sidecar_wait=0.0)
    expected = []
    for number in range(300):
        scan = tmp_path / f"scan{number:03d}.png"
        scan.write_bytes(b"x")
        sidecar = None
        if number % 3:
            suffix = ".ROI.JSON" if number % 3 == 1 else ".Mask.PNG"
            sidecar = tmp_path / f"scan{number:03d}{suffix}"
            sidecar.write_bytes(b"y")
        expected.append(Arrival(scan, sidecar))
    tracker.rescan()
    assert tracker.ready() == [] and tracker.pending == 300
    clock.now += 1.0
    assert sorted(tracker.ready(), key=lambda arrival: str(arrival.scan)) == expected
    for arrival in expected[:100]:
        tracker.forget(arrival.scan)
        if arrival.sidecar is not None:
            tracker.forget(arrival.sidecar)
    assert tracker.pending == 200
    orphan = expected[101]  # its sidecar removed: the scan is then taken alone
    assert orphan.sidecar is not None
    orphan.sidecar.unlink()
    assert Arrival(orphan.scan, None) in tracker.ready() and tracker.pending == 200


def test_a_sidecar_that_is_still_being_written_holds_its_scan(tmp_path: Path) -> None:
    from edge_app.service.intake import Arrival, InboxTracker

    clock = FakeClock()
    tracker = InboxTracker(tmp_path, settle_seconds=1.0, recursive=False, limit=10, clock=clock, sidecar_wait=0.0)
    scan, roi = tmp_path / "scan.png", tmp_path / "scan.roi.json"
    scan.write_bytes(b"scan")
    roi.write_bytes(b'{"regions": [')
    tracker.rescan()
    tracker.ready()
    clock.now += 0.9
    roi.write_bytes(b'{"regions": [{"x": 1, "y": 1, "radius": 2}]}')
    clock.now += 0.2
    assert tracker.ready() == []  # the scan held still, its sidecar did not
    clock.now += 1.0
    assert tracker.ready() == [Arrival(scan, roi)]


def test_regions_needs_roi_and_a_bad_sidecar_each_end_with_the_input_kept(tmp_path: Path) -> None:
    config = _config(tmp_path)
    pipeline = _pipeline(config)
    film = pipeline.take(_drop(config, "film.dcm", b"FULL film"))
    assert film.state is ScanState.ARCHIVED and film.status == "needs_roi" and film.label is None
    again = pipeline.take(_drop(config, "film.dcm", b"FULL film"), _drop(config, "film.roi.json", b"A B"))
    assert again.status == "classified" and again.duplicate_of is None  # the answer to needs_roi is no duplicate
    bad = pipeline.take(_drop(config, "other.png", b"FULL other"), _drop(config, "other.roi.json", b"BAD json"))
    assert bad.state is ScanState.QUARANTINED and bad.failure is not None
    assert bad.failure.kind == "RegionError" and bad.failure.stage == "regions"
    assert bad.failure.reason.startswith("other.roi.json: region 'A'")
    results, errors, audit = _outcomes(config)
    by_input = {(r["input"], r["status"]): r for r in results}
    assert (
        by_input["film.dcm", "needs_roi"]["regions"] == []
        and "full-field" in by_input["film.dcm", "needs_roi"]["reason"]
    )
    assert [r["label"] for r in by_input["film.dcm", "classified"]["regions"]] == ["A", "B"]
    assert [a["status"] for a in audit] == ["needs_roi", "classified", "rejected"]
    assert errors[0]["sidecar"] == "other.roi.json" and errors[0]["status"] == "rejected"
    archive, quarantine = config.paths.archive, config.paths.quarantine
    assert sorted(p.name for p in archive.iterdir()) == ["film (2).dcm", "film (2).roi.json", "film.dcm"]
    assert sorted(p.name for p in quarantine.iterdir()) == ["other.png", "other.png.error.json", "other.roi.json"]
    assert (quarantine / "other.roi.json").read_bytes() == b"BAD json"


def test_a_sidecar_the_service_will_not_read_is_refused_by_its_name_at_the_regions_stage(tmp_path: Path) -> None:
    config = _config(tmp_path)
    pipeline = _pipeline(config)
    pipeline.max_file_bytes = 10  # the scan fits, its region file does not
    scan, sidecar = _drop(config, "scan.png", b"content"), _drop(config, "scan.roi.json", b"A" * 2_000_000)
    final = pipeline.take(scan, sidecar)
    assert final.state is ScanState.QUARANTINED and final.failure is not None
    assert (final.failure.stage, final.failure.kind) == ("regions", "FileTooLargeError")
    assert final.failure.reason.startswith("scan.roi.json: the file is 2 MB, over the 0 MB that [ingest] max_pixels")


def test_a_sidecar_that_left_before_the_claim_is_a_clear_refusal(tmp_path: Path) -> None:
    config = _config(tmp_path)
    pipeline = _pipeline(config)
    scan, sidecar = _drop(config, "scan.png", b"content"), _drop(config, "scan.roi.json", b"A")
    record = pipeline.claimer.receive(scan, sidecar)
    sidecar.unlink()
    final = pipeline.resume(record)
    assert final.state is ScanState.QUARANTINED and final.failure is not None
    assert (final.failure.stage, final.failure.kind) == ("regions", "MissingSidecar")
    assert final.failure.reason.startswith("its region file scan.roi.json left the inbox before it could be read: ")
    assert final.sha256 == hashlib.sha256(b"content").hexdigest()  # the scan itself was read
    assert (config.paths.quarantine / "scan.png").read_bytes() == b"content"


def test_an_entry_that_cannot_be_read_is_refused_at_ingest(tmp_path: Path) -> None:
    config = _config(tmp_path)
    pipeline = _pipeline(config)
    folder = config.paths.inbox / "folder.png"  # a folder named like a scan
    folder.mkdir(parents=True)
    (folder / "inside.txt").write_text("kept")
    final = pipeline.take(folder)
    assert final.state is ScanState.QUARANTINED and final.failure is not None and final.sha256 is None
    assert (final.failure.stage, final.failure.kind) == ("ingest", "NotAFileError")
    assert final.failure.reason == "not a file but a folder: only regular files are scans; it was not read"
    assert (config.paths.quarantine / "folder.png" / "inside.txt").read_text() == "kept"


def test_the_daemon_pairs_scans_and_sidecars_dropped_apart_in_either_order(tmp_path: Path) -> None:
    """Real files, the real watcher and clock: 0.1 s and 1 s apart, scan first or sidecar first; one result each.
    (The drops are paced in real time on purpose; the settle and pairing rules themselves are timed with a fake clock
    above.)"""
    folders = {name: tmp_path / name for name in ("inbox", "results", "archive", "quarantine", "state")}
    config = Config(paths=PathsSection(**folders), ingest=IngestSection(settle_seconds=0.2, sidecar_wait=2.0))
    inbox = config.paths.inbox
    inbox.mkdir(parents=True)
    analyser = FakeAnalyser()
    stopping = threading.Event()
    daemon = Daemon(config, analyser, stopping=stopping)
    runner = threading.Thread(target=daemon.run)
    runner.start()
    try:
        assert daemon.ready.wait(30), "the daemon did not start"
        pairs = {gap: (f"scan{gap}.png", f"scan{gap}.roi.json") for gap in ("0.1a", "0.1b", "1a", "1b")}
        timeline = sorted(
            (at, pairs[gap][index])
            for gap, first, apart in (("0.1a", 0, 0.1), ("0.1b", 1, 0.1), ("1a", 0, 1.0), ("1b", 1, 1.0))
            for index, at in ((first, 0.0), (1 - first, apart))
        )
        started = time.monotonic()
        for at, name in timeline:
            time.sleep(max(0.0, at - (time.monotonic() - started)))
            (inbox / name).write_bytes(b"A B" if name.endswith(".json") else name.encode())
        _wait_until(lambda: len(list(config.paths.results.glob("scan*.json"))) == 4)
    finally:
        stopping.set()
        runner.join(30)
    results, errors, _ = _outcomes(config)
    assert errors == [] and sorted(r["input"] for r in results) == sorted(scan for scan, _ in pairs.values())
    assert all(r["sidecar"] == r["input"].replace(".png", ".roi.json") for r in results)
    assert all([region["label"] for region in r["regions"]] == ["A", "B"] for r in results)
    assert analyser.calls == 4 and not list(inbox.iterdir())


def test_a_schema_2_journal_gains_the_new_columns_and_its_records_still_count(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "journal.sqlite3"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE scan_records (scan_id TEXT PRIMARY KEY, input_name TEXT NOT NULL, state TEXT NOT NULL, "
        "received REAL NOT NULL, updated REAL NOT NULL, sha256 TEXT, result_stem TEXT UNIQUE, settled_name TEXT, "
        "duplicate_of TEXT, label TEXT, probability REAL, failure_stage TEXT, failure_kind TEXT, failure_reason TEXT)"
    )
    old.execute(
        "INSERT INTO scan_records VALUES ('a1', 'old.png', 'archived', 1.0, 2.0, 'ff', 'old', 'old.png', NULL, "
        "'benign', 0.1, NULL, NULL, NULL)"
    )
    old.commit()
    old.close()
    journal = Journal(path)
    record = journal.get("a1")
    assert record is not None and record.status is None and record.sidecar_name is None
    assert journal.first_result_for("ff") == "old.json"  # written before statuses existed: it was classified
    journal.close()


class StopDuringScan(FakeAnalyser):
    """While the first scan is being analysed, runs the SIGTERM handler the service installed, as the interpreter
    does when the signal arrives. Not a real signal to the test worker: one clean-clone run lost its worker in this
    test (a SIGTERM meeting the default action is the way it can), and the whole run then waited on it. The real
    signal to a real service process is test_daemon's and test_web_device's."""

    def analyse(self, data: bytes, name: str, sidecar: Any = None) -> Any:
        if self.calls == 0:
            handler = signal.getsignal(signal.SIGTERM)
            assert callable(handler), handler
            handler(signal.SIGTERM, None)
        return super().analyse(data, name, sidecar)


@pytest.mark.parametrize(("claim_batch", "finished"), [(1, ["a.png"]), (8, ["a.png", "b.png", "c.png"])])
def test_sigterm_during_a_scan_finishes_those_claimed_takes_no_other_and_says_stopping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, claim_batch: int, finished: list[str]
) -> None:
    import edge_app.service.daemon as daemon_module

    messages: list[str] = []
    monkeypatch.setattr(daemon_module, "notify", lambda message: messages.append(message) or True)
    monkeypatch.setattr(daemon_module, "CLAIM_BATCH", claim_batch)  # 8: the three are claimed together
    config = _config(tmp_path)
    for name in ("a.png", "b.png", "c.png"):
        _drop(config, name, name.encode())
    stopping = threading.Event()
    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        daemon_module.install_signal_handlers(stopping)
        summary = Daemon(config, StopDuringScan(), stopping=stopping).run()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    assert summary.counts == {"archived": len(finished)}  # the scans claimed finished; the others were not taken
    results, errors, audit = _outcomes(config)
    assert [r["input"] for r in results] == [a["input"] for a in audit] == finished and errors == []
    waiting = sorted({"a.png", "b.png", "c.png"} - set(finished))
    assert sorted(p.name for p in config.paths.inbox.iterdir()) == waiting  # left where they were
    assert not list((config.paths.state / "processing").iterdir())
    assert messages[0] == "READY=1" and messages[-1] == "STOPPING=1"
    assert f"STATUS={len(finished)} classified, 0 quarantined, {len(waiting)} waiting" in messages


def test_a_full_disk_pauses_intake_and_it_resumes_when_space_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import edge_app.service.daemon as daemon_module

    free = {"mb": 10.0}
    monkeypatch.setattr(daemon_module, "free_megabytes", lambda _path: free["mb"])
    messages: list[str] = []
    monkeypatch.setattr(daemon_module, "notify", lambda message: messages.append(message) or True)
    config = _config(tmp_path)  # min_free_mb is 200 by default
    _drop(config, "waiting.png", b"content")
    daemon = Daemon(config, FakeAnalyser(), exit_when_idle=True)
    summaries: list[Any] = []
    runner = threading.Thread(target=lambda: summaries.append(daemon.run()))
    with caplog.at_level(logging.INFO, logger="edge_app.service.daemon"):
        runner.start()
        _wait_until(lambda: "not taking new scans until space is freed" in caplog.text)
        assert (config.paths.inbox / "waiting.png").is_file() and not daemon.counts  # paused, not exited
        free["mb"] = 200.0  # exactly the minimum: enough
        runner.join(30)
    assert not runner.is_alive() and summaries[0].counts == {"archived": 1}
    assert caplog.text.count("disk space is back") == 1  # said when it came back, not at start-up
    assert "disk space is back (200 MB free): resuming" in caplog.text
    assert "STATUS=paused: only 10 MB free, minimum 200 MB" in messages
    assert (config.paths.archive / "waiting.png").read_bytes() == b"content"


def test_the_journals_queries_answer_what_the_daemon_and_status_ask(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    assert journal.counts() == {"duplicates": 0} and journal.last_finished() is None

    def finished(name: str, at: float, **changes: Any) -> ScanRecord:
        record = journal.insert(received(name, now=at))
        record = journal.advance(record, ScanState.CLAIMED, now=at)
        record = journal.advance(record, ScanState.ANALYSED, now=at, **changes)
        record = journal.advance(record, ScanState.WRITTEN, now=at)
        return journal.advance(record, ScanState.ARCHIVED, now=at + 1)

    first = finished("a.png", 10.0, sha256="1" * 64, result_stem="a", status="classified", settled_name="a.png")
    finished("b.png", 20.0, sha256="1" * 64, result_stem="b", status="classified", duplicate_of="a.json")
    finished("film.dcm", 5.0, sha256="2" * 64, result_stem="film", status="needs_roi")
    analysed = journal.advance(
        journal.advance(journal.insert(received("c.png", now=30.0)), ScanState.CLAIMED, now=30.0),
        ScanState.ANALYSED,
        now=30.0,
        sha256="3" * 64,
        result_stem="c",
        status="classified",
    )
    assert journal.first_result_for("1" * 64) == "a.json"  # the first, not its duplicate
    assert journal.first_result_for("4" * 64) is None  # never seen
    assert journal.first_result_for("2" * 64) is None  # needs_roi answered nothing: no duplicate of it
    assert journal.first_result_for("3" * 64) == "c.json"  # analysed: its result is next in the write lane
    assert journal.result_stem_taken("film") and not journal.result_stem_taken("d")
    assert journal.settled_name_taken("a.png") and not journal.settled_name_taken("b.png")
    assert journal.counts() == {"archived": 3, "analysed": 1, "duplicates": 1}
    last = journal.last_finished()
    assert last is not None and last.input_name == "b.png"  # the most recently updated final record
    assert [r.input_name for r in journal.since(10.0)] == ["a.png", "b.png", "c.png"]  # by arrival, from then on
    assert journal.unfinished() == [analysed] and journal.get(first.scan_id) == first
    journal.close()


def test_the_outcome_table_shows_each_finished_scan_once(tmp_path: Path) -> None:
    from edge_app.service.daemon import outcome_table

    def final(name: str, state: ScanState, **changes: Any) -> ScanRecord:
        return ScanRecord(f"id-{name}", name, state, 1.0, 2.0, **changes)  # type: ignore[arg-type]

    records = [
        final("a-long-name.png", ScanState.ARCHIVED, label="malignant", probability=0.91234, result_stem="a"),
        final("film.dcm", ScanState.ARCHIVED, status="needs_roi", result_stem="film"),
        final("bad.png", ScanState.QUARANTINED, failure=Failure("decode", "K", "the file is empty")),
        final("busy.png", ScanState.CLAIMED),  # not finished: not shown
    ]
    assert outcome_table(records, Path("/r")).splitlines() == [
        "input            outcome     p(malig)  result / overlay / reason",
        "a-long-name.png  malignant     0.9123  /r/a.json  /r/a.gradcam.jpg",
        "film.dcm         needs_roi             /r/film.json  (no regions: its reason says how to mark them)",
        "bad.png          quarantined           the file is empty",
    ]
    assert outcome_table([final("a.png", ScanState.VANISHED)], Path("/r")).splitlines() == [
        "input  outcome     p(malig)  result / overlay / reason",  # as wide as "input", the shortest a column is
        "a.png  vanished              the file left the inbox before it was claimed: nothing was read or answered",
    ]


def test_watcher_events_only_point_the_tracker_at_paths(tmp_path: Path) -> None:
    from watchdog.events import DirCreatedEvent, FileCreatedEvent, FileMovedEvent

    from edge_app.service.intake import InboxTracker, _Handler

    tracker = InboxTracker(tmp_path, settle_seconds=0.0, recursive=True, limit=10, clock=FakeClock())
    wake = threading.Event()
    handler = _Handler(tracker, wake)
    (tmp_path / "sub").mkdir()
    handler.on_any_event(DirCreatedEvent(str(tmp_path / "sub")))  # a folder is not a scan
    handler.on_any_event(FileCreatedEvent(str(tmp_path / "a.png")))
    handler.on_any_event(FileMovedEvent(str(tmp_path / "b.png.part"), str(tmp_path / "b.png")))  # renamed complete
    handler.on_any_event(FileCreatedEvent(str(tmp_path / "c.png").encode()))  # bytes paths, as some observers give
    handler.on_any_event(FileCreatedEvent(str(tmp_path.parent / "elsewhere.png")))  # outside the inbox: ignored
    assert tracker.pending == 3 and wake.is_set()  # and the loop is woken to look at once


@pytest.mark.parametrize(
    ("name", "recursive", "wanted"),
    [
        ("a.png", False, True),
        ("sub/a.png", False, False),  # a subfolder, not watched
        ("sub/a.png", True, True),
        (".hidden.png", True, False),
        ("sub/.cache/a.png", True, False),  # a hidden folder anywhere on the path
        ("a.png.PART", True, False),
        ("a.tmp", True, False),
        ("a.crdownload", True, False),
        ("a.partial", True, False),
        ("a.download", True, False),
    ],
)
def test_which_inbox_paths_are_candidates(tmp_path: Path, name: str, recursive: bool, wanted: bool) -> None:
    from edge_app.service.intake import InboxTracker

    tracker = InboxTracker(tmp_path, settle_seconds=0.0, recursive=recursive, limit=10, clock=FakeClock())
    tracker.note(tmp_path / name)
    assert tracker.pending == int(wanted)
    tracker.note(tmp_path)  # the inbox itself is no candidate
    assert tracker.pending == int(wanted)


def test_the_queue_limit_bounds_what_is_tracked(tmp_path: Path) -> None:
    from edge_app.service.intake import InboxTracker

    tracker = InboxTracker(tmp_path, settle_seconds=0.0, recursive=False, limit=2, clock=FakeClock())
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"x")
    tracker.rescan()
    assert tracker.pending == 2  # the third waits in the inbox for the next rescan
    tracker.forget(tmp_path / "a.png")
    tracker.rescan()
    assert tracker.pending == 2


class _SteppingWake(threading.Event):
    """The loop's idle wait, on a fake clock: each wait is half a second; the twelfth asks the loop to stop."""

    def __init__(self, stopping: threading.Event) -> None:
        super().__init__()
        self.stopping = stopping
        self.now = 1000.0
        self.waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.now += 0.5
        self.waits += 1
        if self.waits == 12:
            self.stopping.set()
        return False


def test_the_loop_pings_rescans_and_prunes_by_its_own_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edge_app.service.daemon as daemon_module

    messages: list[str] = []
    monkeypatch.setattr(daemon_module, "notify", lambda message: messages.append(message) or True)
    monkeypatch.setattr(daemon_module, "watchdog_interval", lambda: 1.0)
    monkeypatch.setattr(daemon_module, "PRUNE_EVERY_SECONDS", 3.0)
    stopping = threading.Event()
    wake = _SteppingWake(stopping)
    config = _config(tmp_path)
    config = Config(paths=config.paths, ingest=IngestSection(settle_seconds=0.0, rescan_seconds=2.0))
    daemon = Daemon(config, FakeAnalyser(), stopping=stopping, clock=lambda: wake.now, wake=wake)
    rescans: list[float] = []
    prunes: list[float] = []
    real_rescan, real_prune = daemon.tracker.rescan, daemon.journal.prune
    monkeypatch.setattr(daemon.tracker, "rescan", lambda: rescans.append(wake.now) or real_rescan())
    monkeypatch.setattr(daemon.journal, "prune", lambda days: prunes.append(wake.now) or real_prune(days))
    daemon.run()
    # twelve idle turns, half a second apart (1000.0 ... 1005.5): a ping every second, a rescan every two, a prune
    # every three, each besides the ones at start
    assert messages == ["READY=1"] + ["WATCHDOG=1"] * 5 + ["STOPPING=1"]
    assert rescans == [1000.0, 1002.0, 1004.0]
    assert prunes == [1000.0, 1003.0]


def test_symbolic_links_are_taken_at_once_and_never_as_sidecars(tmp_path: Path) -> None:
    from edge_app.service.intake import Arrival, InboxTracker

    clock = FakeClock()
    tracker = InboxTracker(tmp_path, settle_seconds=5.0, recursive=False, limit=10, clock=clock, sidecar_wait=5.0)
    (tmp_path / "link.png").symlink_to("/etc/hostname")
    (tmp_path / "scan.png").write_bytes(b"scan")
    (tmp_path / "scan.roi.json").symlink_to("/etc/hostname")  # a linked sidecar is not read, nor paired
    (tmp_path / "ghost.mask.png").symlink_to("/etc/hostname")
    tracker.rescan()
    assert tracker.ready() == [Arrival(tmp_path / "link.png", None)]  # quarantined unread by the pipeline, now
    tracker.forget(tmp_path / "link.png")
    clock.now += 10.0
    assert tracker.ready() == [Arrival(tmp_path / "scan.png", None)]


def test_only_a_recursive_tracker_looks_into_subfolders(tmp_path: Path) -> None:
    from edge_app.service.intake import InboxTracker

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.png").write_bytes(b"x")
    (tmp_path / "top.png").write_bytes(b"x")
    flat = InboxTracker(tmp_path, settle_seconds=0.0, recursive=False, limit=10, clock=FakeClock())
    flat.rescan()
    deep = InboxTracker(tmp_path, settle_seconds=0.0, recursive=True, limit=10, clock=FakeClock())
    deep.rescan()
    assert (flat.pending, deep.pending) == (1, 2)


def test_status_words_and_the_journal_file() -> None:
    from collections import Counter

    from edge_app.service.daemon import _counts_text, journal_path

    assert _counts_text(Counter({"archived": 3, "quarantined": 1})) == "3 classified, 1 quarantined"
    assert _counts_text(Counter({"archived": 2, "needs_roi": 1, "vanished": 4})) == (
        "2 classified, 0 quarantined, 1 need regions, 4 vanished"
    )
    assert journal_path(Config()) == Path("/var/lib/mammo-edge/state/journal.sqlite3")


def test_a_scan_is_followed_by_a_watchdog_ping_only_when_systemd_watches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edge_app.service.daemon as daemon_module

    for interval in (None, 30.0):
        messages: list[str] = []
        monkeypatch.setattr(daemon_module, "notify", lambda message, sent=messages: sent.append(message) or True)
        monkeypatch.setattr(daemon_module, "watchdog_interval", lambda value=interval: value)
        config = _config(tmp_path / str(interval))
        _drop(config, "a.png", b"a")
        Daemon(config, FakeAnalyser(), exit_when_idle=True).run()
        expected = ["READY=1", "STATUS=1 classified, 0 quarantined, 0 waiting"]
        assert messages == [*expected, *(["WATCHDOG=1"] if interval else []), "STOPPING=1"]


def test_the_daemon_takes_scans_from_subfolders_when_told_to(tmp_path: Path) -> None:
    config = _config(tmp_path)  # recursive
    _drop(config, "ward/a.png", b"a")
    assert Daemon(config, FakeAnalyser(), exit_when_idle=True).run().counts == {"archived": 1}
    assert (config.paths.archive / "ward" / "a.png").read_bytes() == b"a"


def test_the_service_makes_every_folder_it_needs_however_deep(tmp_path: Path) -> None:
    root = tmp_path / "not" / "yet"
    folders = {name: root / name / "deep" for name in ("inbox", "results", "archive", "quarantine", "state")}
    config = Config(paths=PathsSection(**folders), ingest=IngestSection(settle_seconds=0.0, recursive=True))
    pipeline = _pipeline(config)
    assert all(folder.is_dir() for folder in folders.values())
    good = pipeline.take(_drop(config, "ward/a/scan.png", b"scan"), _drop(config, "ward/a/scan.roi.json", b"A"))
    bad = pipeline.take(_drop(config, "ward/b/bad.png", b"BAD"))
    assert (good.state, bad.state) == (ScanState.ARCHIVED, ScanState.QUARANTINED)
    assert (config.paths.archive / "ward/a/scan.roi.json").read_bytes() == b"A"
    assert (config.paths.quarantine / "ward/b/bad.png.error.json").is_file()


def test_a_move_records_its_time() -> None:
    record = received("a.png", now=1.0)
    assert advance(record, ScanState.CLAIMED, now=5.0).updated == 5.0
    assert advance(record, ScanState.CLAIMED).updated > 5.0  # now


def test_the_record_carries_the_analysis_and_a_refusal_clears_it(tmp_path: Path) -> None:
    config = _config(tmp_path)
    journal_file = config.paths.state / "journal.sqlite3"
    stopping = _pipeline(config, StoppingJournal(journal_file, ScanState.ANALYSED, "after"))
    with pytest.raises(StopInjectedError):
        stopping.take(_drop(config, "a.png", b"good"))
    analysed = stopping.journal.unfinished()[0]
    expected = FakeAnalyser().analyse(b"good", "a.png")
    assert (analysed.status, analysed.label, analysed.probability) == (
        expected.status,
        expected.label,
        expected.probability,
    )
    assert analysed.result_stem == "a" and analysed.settled_name == "a.png"
    stopping.journal.close()
    (config.paths.state / "processing" / analysed.scan_id).write_bytes(b"BAD now")  # refused when analysed again
    recovering = _pipeline(config)
    recovering.recover()
    (final,) = list(recovering.journal.since(0))
    assert final.state is ScanState.QUARANTINED and final.sha256 == hashlib.sha256(b"BAD now").hexdigest()
    assert (final.result_stem, final.duplicate_of, final.status, final.label, final.probability) == (None,) * 5


def test_names_are_reserved_in_the_folder_the_scan_goes_to(tmp_path: Path) -> None:
    config = _config(tmp_path)
    pipeline = _pipeline(config)
    for folder, name in ((config.paths.quarantine, "a.png"), (config.paths.archive, "b.png")):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"older")
    (config.paths.quarantine / "c.png.error.json").write_bytes(b"{}")  # an error file holds its scan's name
    (config.paths.archive / "d.png.error.json").write_bytes(b"{}")  # but not in the archive
    assert pipeline.take(_drop(config, "a.png", b"a")).settled_name == "a.png"  # archived: the quarantine's is no clash
    assert pipeline.take(_drop(config, "b.png", b"BAD b")).settled_name == "b.png"
    assert pipeline.take(_drop(config, "c.png", b"BAD c")).settled_name == "c (2).png"
    assert pipeline.take(_drop(config, "d.png", b"d")).settled_name == "d.png"


def test_a_decoding_refusal_with_a_sidecar_is_not_blamed_on_the_sidecar(tmp_path: Path) -> None:
    config = _config(tmp_path)
    record = _pipeline(config).take(_drop(config, "film.dcm", b"BAD"), _drop(config, "film.roi.json", b"A"))
    assert record.failure is not None and record.failure.reason == "unrecognised file format (fake)"
    film = _pipeline(config).take(_drop(config, "other.dcm", b"FULL film"))
    results, _, _ = _outcomes(config)
    assert film.status == "needs_roi" and results[0]["reason"] == "other.dcm is a full-field film (fake)"


def test_exit_when_idle_waits_for_scans_below_the_inbox_only_when_it_reads_subfolders(tmp_path: Path) -> None:
    from edge_app.service.daemon import _scans_in

    (tmp_path / "clinic").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "waiting.roi.json").write_text("{}")  # a sidecar waiting for its scan is not a scan
    assert not _scans_in(tmp_path, recursive=True) and not _scans_in(tmp_path, recursive=False)
    (tmp_path / "clinic" / "film.dcm").write_bytes(b"DICM")
    assert _scans_in(tmp_path, recursive=True) and not _scans_in(tmp_path, recursive=False)
    (tmp_path / "patch.png").write_bytes(b"PNG")
    assert _scans_in(tmp_path, recursive=False)


def test_recovery_takes_the_unfinished_a_batch_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Five scans left claimed by a crash are finished in batches of at most RECOVERY_BATCH (their analyses wait in
    memory between the steps), each exactly once."""
    import edge_app.service.pipeline as pipeline_module

    config = _config(tmp_path)
    journal_file = config.paths.state / "journal.sqlite3"
    stopping = _pipeline(config, StoppingJournal(journal_file, ScanState.CLAIMED, "after"))
    for index in range(5):
        with pytest.raises(StopInjectedError):
            stopping.take(_drop(config, f"scan{index}.png", f"scan {index}".encode()))
    stopping.journal.close()
    monkeypatch.setattr(pipeline_module, "RECOVERY_BATCH", 2)
    recovering = _pipeline(config)
    batches: list[int] = []
    real = ScanPipeline.resume_many

    def counted(self: ScanPipeline, items: Any) -> Any:
        batches.append(len(items))
        return real(self, items)

    monkeypatch.setattr(ScanPipeline, "resume_many", counted)
    assert recovering.recover() == 5
    assert batches == [2, 2, 1]
    finals = recovering.journal.since(0)
    assert sorted(record.input_name for record in finals) == [f"scan{index}.png" for index in range(5)]
    assert all(record.state is ScanState.ARCHIVED for record in finals) and len(_outcomes(config)[2]) == 5
