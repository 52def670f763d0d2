"""``mammo-edge run``: the watched-folder service, composed from the intake and the scan pipeline.

In arrival order: the loop receives and claims the scans that are ready together (up to `CLAIM_BATCH`: one commit and
one fsync per folder for them all) and reads, decodes and cuts them one at a time; the lanes (`WriteBehind`) classify
each, explain each analysis and render its overlay, then record, write and settle the scans waiting for them as one
batch, in the same order, while the loop cuts the next. Memory stays flat over months: the process keeps counters
(archived scans answered ``needs_roi`` are counted apart from the classified ones), never a list of scans; the journal
is the history, pruned to ``[journal] retention_days``. SIGTERM and SIGINT let the scans claimed finish, then the
observer is stopped and joined and `run` returns 0. Under systemd: ``READY=1`` once the backlog is recovered,
``WATCHDOG=1`` from this loop at half of ``WATCHDOG_USEC`` and from the write lane after each finished scan, ``STATUS=``
with counts, ``STOPPING=1`` once the lanes are drained.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType

from edge_app.config import Config
from edge_app.decode import max_file_bytes
from edge_app.fsutil import free_megabytes
from edge_app.regions import sidecar_kind
from edge_app.service.analyse import NEEDS_ROI, Analyser, Analysis
from edge_app.service.claim import Claimer
from edge_app.service.health import HEALTHY, DeviceMetrics, Heartbeat
from edge_app.service.intake import InboxTracker, is_scan_entry, start_observer
from edge_app.service.journal import Journal
from edge_app.service.lifecycle import ScanRecord, ScanState
from edge_app.service.pipeline import Outcome, Prepared, ScanPipeline
from edge_app.service.settle import Settler
from edge_app.service.submissions import SubmissionQueue
from edge_app.service.writebehind import WriteBehind
from edge_app.service.writer import AnswerSink, ResultWriter
from edge_app.systemd import notify, watchdog_interval

log = logging.getLogger(__name__)
TICK_SECONDS = 0.2
PRUNE_EVERY_SECONDS = 3600.0
STORAGE_RETRY_SECONDS = 5.0
MODEL_CHECK_SECONDS = 60.0
CLAIM_BATCH = 8
"""Ready arrivals claimed together at most; a stop waits for the ones claimed to be analysed."""
STORAGE_ERRORS = (OSError, sqlite3.Error)
"""A folder or the journal refused a write (disk full, remounted read-only, an I/O error): the scan stays where the
lifecycle left it, and the daemon retries instead of exiting into a restart loop."""


def journal_path(config: Config) -> Path:
    return config.paths.state / "journal.sqlite3"


def build_pipeline(
    config: Config,
    journal: Journal,
    analyser: Analyser,
    sinks: tuple[AnswerSink, ...] = (),
    after_write: tuple[Callable[[], None], ...] = (),
) -> ScanPipeline:
    """The scan pipeline over the configured folders (the one place that wires the stages together)."""
    paths = config.paths
    paths.inbox.mkdir(parents=True, exist_ok=True)
    return ScanPipeline(
        journal,
        Claimer(paths.inbox, paths.state / "processing", journal, paths.archive, SubmissionQueue(paths.state)),
        analyser,
        ResultWriter(
            paths.results, analyser.identity, paths.quarantine, sinks, after_write, int(config.log.audit_max_mb * 2**20)
        ),
        Settler(paths.archive, paths.quarantine, journal.settled_name_taken),
        max_file_bytes(config.ingest.max_pixels),
    )


@dataclass(frozen=True)
class RunSummary:
    started: float  # wall clock, as records' `received`
    counts: dict[str, int]


class Daemon:
    def __init__(
        self,
        config: Config,
        analyser: Analyser,
        exit_when_idle: bool = False,
        stopping: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        sinks: tuple[AnswerSink, ...] = (),
        after_write: tuple[Callable[[], None], ...] = (),
        model_check: Callable[[], str | None] | None = None,
        wake: threading.Event | None = None,
    ) -> None:
        self.config = config
        self.model_check = model_check
        self._model_problem: str | None = None
        self.analyser = analyser
        self.journal = Journal(journal_path(config))
        self.pipeline = build_pipeline(config, self.journal, analyser, sinks, after_write)
        ingest = config.ingest
        self.tracker = InboxTracker(
            config.paths.inbox, ingest.settle_seconds, ingest.recursive, ingest.queue_limit, clock, ingest.sidecar_wait
        )
        self.stopping = stopping or threading.Event()
        self.exit_when_idle = exit_when_idle
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self.ready = threading.Event()  # set once the inbox is watched (what READY=1 tells systemd)
        # Rung by the watcher on every event in the inbox and every reader's submission: the idle loop looks again at
        # once instead of at its next tick (a stop is seen within a tick).
        self._wake = wake or threading.Event()
        self._paused_for_disk = False
        self._storage_error: Exception | None = None
        self._storage_retry_at = 0.0
        self._counts_lock = threading.Lock()
        self.writer = WriteBehind(self._classify, self.pipeline.resume_many, self._finished, STORAGE_ERRORS)
        self.metrics = DeviceMetrics(config, analyser.identity)
        self.heartbeat = Heartbeat(config.paths.state)

    def run(self) -> RunSummary:
        started = time.time()
        pruned = self.journal.prune(self.config.journal.retention_days)
        if pruned:
            log.info("pruned %d journal record(s) older than %s days", pruned, self.config.journal.retention_days)
        recovered = self.pipeline.recover()
        if recovered:
            log.info("recovered %d scan(s) interrupted by an earlier stop", recovered)
        submissions = self.pipeline.claimer.submissions.folder
        observer = start_observer(self.tracker, self.config.ingest.polling, self._wake, submissions)
        try:
            self.tracker.rescan()
            notify("READY=1")
            self.ready.set()
            identity = self.analyser.identity
            log.info(
                "ready: model %s %s (%s, %s); watching %s",
                identity.name,
                identity.version,
                identity.variant,
                identity.runtime,
                self.config.paths.inbox,
            )
            self._loop()
        finally:
            self.writer.close()  # the scans already analysed are written before the service says it stops
            self.heartbeat.stop()
            self.metrics.write(self.tracker.pending, self.tracker.oldest_mtime())
            notify("STOPPING=1")
            observer.stop()
            observer.join()
            self.journal.close()
        log.info("stopped: %s this run", _counts_text(self.counts))
        return RunSummary(started, dict(self.counts))

    def _loop(self) -> None:
        ping_every = watchdog_interval()
        last_ping = last_rescan = last_prune = last_model_check = self.clock()
        while not self.stopping.is_set():
            now = self.clock()
            if ping_every is not None and now - last_ping >= ping_every:
                notify("WATCHDOG=1")
                last_ping = now
            if now - last_rescan >= self.config.ingest.rescan_seconds:
                self.tracker.rescan()
                last_rescan = now
            if self.model_check is not None and now - last_model_check >= MODEL_CHECK_SECONDS:
                self._check_model(self.model_check())
                last_model_check = now
            if now - last_prune >= PRUNE_EVERY_SECONDS:
                self.journal.prune(self.config.journal.retention_days)
                last_prune = now
            self._note_write_failure()
            self.heartbeat.beat(self._condition())
            self.metrics.write_due(self.tracker)
            if self._disk_low() or not self._storage_works(now):
                self._idle(TICK_SECONDS if self._storage_error else 1.0)
                continue
            ready = self.tracker.ready()
            for first in range(0, len(ready), CLAIM_BATCH):
                if not self._can_take():
                    break
                arrivals = ready[first : first + CLAIM_BATCH]
                for arrival in arrivals:
                    self.tracker.forget(arrival.scan)
                    if arrival.sidecar is not None:
                        self.tracker.forget(arrival.sidecar)
                entries = [(arrival.scan, arrival.sidecar) for arrival in arrivals]
                if not self._take(partial(self.pipeline.claim_new, entries)):
                    break
            submitted = self.pipeline.claimer.submissions.pending()
            for scan_id in submitted:
                if not self._can_take() or not self._take(partial(self._claim_submission, scan_id)):
                    break
            if not ready and not submitted:
                inbox, recursive = self.config.paths.inbox, self.config.ingest.recursive
                if self.exit_when_idle and self.tracker.pending == 0 and not _scans_in(inbox, recursive):
                    log.info("inbox empty: exiting (--exit-when-idle)")
                    break
                due = self.tracker.seconds_until_due()
                self._idle(TICK_SECONDS if due is None else min(TICK_SECONDS, due))

    def _idle(self, seconds: float) -> None:
        """Sleep until the watcher rings or `seconds` pass (never longer than a tick, so a stop is seen)."""
        self._wake.wait(min(seconds, TICK_SECONDS))
        self._wake.clear()

    def _can_take(self) -> bool:
        self._note_write_failure()
        return not (self.stopping.is_set() or self._disk_low() or self._storage_error)

    def _take(self, claim: Callable[[], list[ScanRecord]]) -> bool:
        """Receive and claim arrivals, read, decode and cut each and hand it to the lanes (classified and written
        while the next scan is cut); False when a write was refused (the loop pauses and retries)."""
        try:
            claimed = claim()
        except STORAGE_ERRORS as exc:
            self._storage_failed(exc)
            return False
        for record in claimed:
            self.writer.submit(record, None if record.state.final else self.pipeline.prepare(record))
        return True

    def _classify(self, record: ScanRecord, prepared: Prepared) -> Outcome:
        """The inference lane's work: the prepared scan's outcome, its analysis time observed."""
        outcome = self.pipeline.classify(record, prepared)
        if isinstance(outcome, Analysis):
            self.metrics.analysed(sum(outcome.timings_ms.values()) / 1000)
        return outcome

    def _claim_submission(self, scan_id: str) -> list[ScanRecord]:
        record = self.pipeline.claim_submission(scan_id)
        return [] if record is None else [record]

    def _condition(self) -> str:
        """What the heartbeat says: ``ok``, or why the loop takes no scans."""
        if self._storage_error is not None:
            return f"paused: cannot write ({self._storage_error})"
        if self._paused_for_disk:
            return "paused: too little free space"
        return HEALTHY

    def _finished(self, record: ScanRecord) -> None:
        """A scan reached its final state (called by the write lane)."""
        self.metrics.finished(record)
        with self._counts_lock:
            self.counts[NEEDS_ROI if record.status == NEEDS_ROI else record.state.value] += 1
            status = _counts_text(self.counts)
        notify(f"STATUS={status}, {self.tracker.pending} waiting")
        if watchdog_interval() is not None:
            notify("WATCHDOG=1")  # a finished scan proves the service alive, however long it took

    def _note_write_failure(self) -> None:
        """A storage error in the write lane pauses the loop and is retried, as one of its own would be (a bug there
        is raised here)."""
        self.writer.raise_fatal()
        failure = self.writer.failure()
        if failure is not None and self._storage_error is None:
            self._storage_failed(failure)

    def _check_model(self, problem: str | None) -> None:
        """Say once, loudly, that the bundle on disk changed under the service (and once when it is whole again)."""
        if problem == self._model_problem:
            return
        self._model_problem = problem
        if problem is None:
            log.info("the model files on disk match the manifest again")
            return
        log.error(
            "the model on disk changed while running (%s): answers still come from the copy verified at start; "
            "a restart will refuse the bundle: install it again with `mammo-edge model install`",
            problem,
        )
        notify(f"STATUS=model files changed on disk: {problem}")

    def _storage_failed(self, error: Exception) -> None:
        """Report a refused write once, then retry every STORAGE_RETRY_SECONDS (the scan waits in processing, or in
        the inbox if it was not yet claimed: a later rescan finds it)."""
        if self._storage_error is None:
            log.error(
                "cannot store a scan's outcome (%s): the scan is kept where it is; retrying every %.0f s",
                error,
                STORAGE_RETRY_SECONDS,
            )
        self._storage_error = error
        self._storage_retry_at = self.clock() + STORAGE_RETRY_SECONDS
        notify(f"STATUS=paused: cannot write ({error})")

    def _storage_works(self, now: float) -> bool:
        """False while writes fail; once the retry time comes, finishing the interrupted scans is the test."""
        if self._storage_error is None:
            return True
        if now < self._storage_retry_at:
            return False
        self.writer.drain()  # the lane holds nothing while the loop finishes the scans itself
        try:
            finished = self.pipeline.recover()
        except STORAGE_ERRORS as exc:
            self._storage_failed(exc)
            return False
        log.info("writing works again (%d interrupted scan(s) finished): resuming", finished)
        self._storage_error = None
        self.writer.resume()
        self.tracker.rescan()  # what arrived, or was left unclaimed, meanwhile
        return True

    def _disk_low(self) -> bool:
        minimum = self.config.ingest.min_free_mb
        free = min(free_megabytes(self.config.paths.results), free_megabytes(self.config.paths.state))
        low = free < minimum
        if low != self._paused_for_disk:
            self._paused_for_disk = low
            if low:
                log.error("only %.0f MB free (minimum %d MB): not taking new scans until space is freed", free, minimum)
                notify(f"STATUS=paused: only {free:.0f} MB free, minimum {minimum} MB")
            else:
                log.info("disk space is back (%.0f MB free): resuming", free)
        return low


def _scans_in(inbox: Path, recursive: bool) -> bool:
    """Whether a file other than a sidecar waiting for its scan is in the inbox (`--exit-when-idle` waits for those;
    an empty subfolder is not a scan)."""
    entries = inbox.rglob("*") if recursive else inbox.iterdir()
    return any(is_scan_entry(path) and sidecar_kind(path.name) is None for path in entries)


def _counts_text(counts: Counter[str]) -> str:
    """What systemd's STATUS= and the stop line say, in a technician's words."""
    classified, rejected = counts[ScanState.ARCHIVED.value], counts[ScanState.QUARANTINED.value]
    vanished, needs_roi = counts[ScanState.VANISHED.value], counts[NEEDS_ROI]
    return (
        f"{classified} classified, {rejected} quarantined"
        + (f", {needs_roi} need regions" if needs_roi else "")
        + (f", {vanished} vanished" if vanished else "")
    )


def outcome_table(records: Iterable[ScanRecord], results: Path) -> str:
    """A plain-text table of finished scans: the result and overlay paths, or the reason of a rejection."""
    rows = [
        (
            record.input_name,
            record.label or record.status or record.state.value,
            "" if record.probability is None else f"{record.probability:.4f}",
            _outcome_detail(record, results),
        )
        for record in records
        if record.state.final
    ]
    width = max([len(row[0]) for row in rows] + [5])
    lines = [f"{'input':<{width}}  {'outcome':<11} {'p(malig)':>8}  result / overlay / reason"]
    lines += [
        f"{name:<{width}}  {outcome:<11} {probability:>8}  {detail}" for name, outcome, probability, detail in rows
    ]
    return "\n".join(lines)


def _outcome_detail(record: ScanRecord, results: Path) -> str:
    """A finished scan's last column: why it was refused or never read, or where its answer is."""
    if record.failure:
        return record.failure.reason
    if record.state is ScanState.VANISHED:
        return "the file left the inbox before it was claimed: nothing was read or answered"
    if record.status == NEEDS_ROI:
        return f"{results / str(record.result_file)}  (no regions: its reason says how to mark them)"
    return f"{results / str(record.result_file)}  {results / str(record.overlay_file)}"


def install_signal_handlers(stopping: threading.Event) -> None:
    """SIGTERM/SIGINT set `stopping`: the scan in progress finishes, then the loop ends (installed before the
    model loads, so a stop during start-up is clean too)."""

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current scan, then stopping", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
