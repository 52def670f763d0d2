"""Load and soak, on the fast fake analyser (tests/fakes.py) so the service itself is what is measured: 1,000 scans at
once and in bursts, each answered exactly once with the tracked queue within its limit; then a long run whose
memory, open files and journal growth stay flat. ``pytest --long`` soaks 20,000 scans (200 simulated days;
CI runs 2,000)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import cv2
import pytest
from corpus import patch
from fakes import FAKE_IDENTITY, FakeAnalyser
from harness import SERVICE, config_under, distinct_scan, records, report, running, service_config

import edge_app.service.daemon as daemon_module
from edge_app.config import JournalSection
from edge_app.report.page import PageContext, ResultsPage
from edge_app.service.analyse import Analysis, Overlay, Sidecar
from edge_app.service.lifecycle import ScanState

pytestmark = pytest.mark.usefixtures("fake_runtime")  # the service around the model, on the fake model


class OverlayFakeAnalyser(FakeAnalyser):
    """The fake analyser with a real (small) overlay picture, so the results page makes real thumbnails."""

    overlay = cv2.imencode(".jpg", patch(96))[1].tobytes()

    def analyse(self, data: bytes, name: str, sidecar: Sidecar | None = None) -> Analysis:
        return replace(super().analyse(data, name, sidecar), overlay=Overlay.encoded(self.overlay))


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def _drop(inbox: Path, first: int, count: int) -> None:
    for index in range(first, first + count):
        (inbox / f"scan{index:05d}.png").write_bytes(b"scan %d" % index)


class Sampler:
    """Samples RSS, open files and the tracker's queue every 50 ms while the daemon works."""

    def __init__(self, daemon: object) -> None:
        self.daemon = daemon
        self.peak_rss = 0.0
        self.peak_queue = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sampler")

    def _run(self) -> None:
        while not self.done.wait(0.05):
            self.peak_rss = max(self.peak_rss, _rss_mb())
            self.peak_queue = max(self.peak_queue, self.daemon.daemon.tracker.pending)  # type: ignore[attr-defined]

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


def test_a_thousand_scans_at_once_and_in_bursts_are_each_answered_once_within_the_queue_limit(tmp_path: Path) -> None:
    config = config_under(tmp_path, settle_seconds=0.1, queue_limit=200, rescan_seconds=0.3)
    analyser = FakeAnalyser()
    inbox = config.paths.inbox
    started = time.monotonic()
    with running(config, analyser) as daemon, Sampler(daemon) as sampler:
        _drop(inbox, 0, 1000)  # at once
        daemon.wait_for(lambda: sum(r.state.final for r in records(config)) == 1000, timeout=600, what="1,000")
        at_once = time.monotonic() - started
        for burst in range(5):  # then in bursts, while it works
            _drop(inbox, 1000 + 200 * burst, 200)
            time.sleep(0.5)
        daemon.wait_for(lambda: sum(r.state.final for r in records(config)) == 2000, timeout=600, what="bursts")
    finals = records(config)
    assert len(finals) == 2000 and all(r.state is ScanState.ARCHIVED for r in finals)
    assert len({r.input_name for r in finals}) == 2000 and analyser.calls == 2000
    assert len(list(config.paths.results.glob("*.json"))) == 2000 and not any(inbox.iterdir())
    assert 0 < sampler.peak_queue <= 200
    report(
        "load",
        {
            "scans": 2000,
            "at_once": 1000,
            "bursts": "5 x 200",
            "queue_limit": 200,
            "peak_queue": sampler.peak_queue,
            "peak_rss_mb_of_the_test_process": round(sampler.peak_rss, 1),
            "seconds_for_1000_at_once": round(at_once, 1),
        },
    )


def _peak_rss_mb(pid: int) -> float:
    """The process's own high-water mark since its exec (VmHWM; `ru_maxrss` would also count the forking parent's
    pages from before the exec)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def test_the_service_process_takes_a_thousand_scans_at_once_within_bounded_memory(tmp_path: Path) -> None:
    """The real service process (on the fake model: real decoding, regions, overlays) given 1,000 PNG scans at once:
    each answered once, and its peak RSS reported."""
    config = service_config(tmp_path)
    for index in range(1000):
        (tmp_path / "inbox" / f"scan{index:04d}.png").write_bytes(distinct_scan(index))
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, str(SERVICE), "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while sum(r.state.final for r in records(config_under(tmp_path))) < 1000:
            assert process.poll() is None and time.monotonic() < deadline, "the service stopped or stalled"
            time.sleep(0.2)
        seconds = time.monotonic() - started
        peak_mb = _peak_rss_mb(process.pid)
    finally:
        process.terminate()
    assert process.wait(60) == 0
    finals = records(config_under(tmp_path))
    assert len(finals) == 1000 and {r.state for r in finals} == {ScanState.ARCHIVED}
    assert len({r.input_name for r in finals}) == 1000 and len(list((tmp_path / "results").glob("*.json"))) == 1000
    assert peak_mb < 300, f"the service peaked at {peak_mb:.0f} MB"
    report("load-process", {"scans": 1000, "peak_rss_mb": round(peak_mb, 1), "seconds": round(seconds, 1)})


def test_a_long_run_keeps_memory_open_files_and_the_journal_flat(
    tmp_path: Path, long_mode: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 scans a simulated day (the wall clock moves a day between batches), the journal kept 3 days, the results
    page regenerated after every result as `mammo-edge run` does: after the first retention period, memory, open
    files, the journal's size on disk and the page's update cost stop growing (the cost judged by its thread's CPU
    time: its wall time also counts whatever else the machine runs, and a model build beside it tripled it once)."""
    total, per_day = (20_000 if long_mode else 2_000), 100
    real_time, day = time.time, [0]
    monkeypatch.setattr(time, "time", lambda: real_time() + 86_400.0 * day[0])
    monkeypatch.setattr(daemon_module, "PRUNE_EVERY_SECONDS", 0.2)
    config = config_under(tmp_path, settle_seconds=0.0, queue_limit=per_day, rescan_seconds=0.2)
    config = replace(config, journal=JournalSection(retention_days=3.0))
    journal = config.paths.state / "journal.sqlite3"
    samples: list[tuple[int, float, int, int, int]] = []  # scans done, RSS MB, open files, journal bytes, records
    page = ResultsPage(config.paths.results, PageContext(FAKE_IDENTITY, "", None))
    updates: list[tuple[float, float]] = []  # wall and CPU seconds

    def timed_update() -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        page.update()
        updates.append((time.perf_counter() - wall, time.thread_time() - cpu))

    with running(config, OverlayFakeAnalyser(), after_write=(timed_update,)) as daemon:
        for first in range(0, total, per_day):
            _drop(config.paths.inbox, first, per_day)
            daemon.wait_for(lambda n=first + per_day: daemon.daemon.counts["archived"] >= n, timeout=600)
            day[0] += 1
            time.sleep(0.25)  # a prune runs (every 0.2 s of the daemon's clock) in the new day
            size = sum(p.stat().st_size for p in journal.parent.glob("journal.sqlite3*"))
            samples.append((first + per_day, _rss_mb(), _open_files(), size, len(records(config))))
    quarter = max(1, len(samples) // 4)
    early, late = samples[quarter - 1], samples[-1]
    rss_growth = late[1] - early[1]
    assert rss_growth < 20, f"memory grew {rss_growth:.1f} MB over {late[0] - early[0]} scans"
    assert late[2] <= early[2] + 2, f"open files grew from {early[2]} to {late[2]}"
    assert max(s[4] for s in samples[quarter:]) <= 5 * per_day, "the journal kept more than its retention"
    assert late[3] <= 1.25 * max(s[3] for s in samples[: len(samples) // 2]), "the journal file kept growing"
    (page_early, cpu_early), (page_late, cpu_late) = (
        tuple(statistics.median(column) for column in zip(*part, strict=True))
        for part in (updates[: len(updates) // 4], updates[-len(updates) // 4 :])
    )
    assert len(updates) == total and cpu_late < 2 * cpu_early + 0.005, (cpu_early, cpu_late)
    report(
        "soak" if long_mode else "soak-ci",
        {
            "scans": total,
            "simulated_days": len(samples),
            "rss_mb_after_first_quarter": round(early[1], 1),
            "rss_mb_at_end": round(late[1], 1),
            "open_files": [early[2], late[2]],
            "journal_records_at_end": late[4],
            "journal_mb_max_first_half": round(max(s[3] for s in samples[: len(samples) // 2]) / 1e6, 2),
            "journal_mb_at_end": round(late[3] / 1e6, 2),
            "page_update_ms_median_first_quarter": round(1000 * page_early, 1),
            "page_update_ms_median_last_quarter": round(1000 * page_late, 1),
            "page_update_cpu_ms_median_first_quarter": round(1000 * cpu_early, 1),
            "page_update_cpu_ms_median_last_quarter": round(1000 * cpu_late, 1),
        },
    )
