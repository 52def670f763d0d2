"""``mammo-edge run``: the watched-folder service loop.

One scan at a time (bounded memory), in arrival order. SIGTERM and SIGINT let the current scan finish, then the
observer is stopped and joined and the process exits 0. Under systemd: ``READY=1`` once the model is loaded and
the backlog recovered, ``WATCHDOG=1`` from this loop at half of ``WATCHDOG_USEC``, ``STATUS=`` with counts.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType

from edge_app.config import Config
from edge_app.fsutil import free_megabytes
from edge_app.journal import Journal
from edge_app.model import EdgeModel
from edge_app.processor import Outcome, Processor
from edge_app.systemd import notify, watchdog_interval
from edge_app.watcher import InboxTracker, start_observer

log = logging.getLogger("mammo-edge")
TICK_SECONDS = 0.2


class Daemon:
    def __init__(
        self, config: Config, model: EdgeModel, exit_when_idle: bool = False, stopping: threading.Event | None = None
    ) -> None:
        self.config = config
        self.model = model
        self.journal = Journal(config.paths.state / "journal.sqlite3")
        self.processor = Processor(config, model, journal=self.journal)
        ingest = config.ingest
        self.tracker = InboxTracker(config.paths.inbox, ingest.settle_seconds, ingest.recursive, ingest.queue_limit)
        self.stopping = stopping or threading.Event()
        self.exit_when_idle = exit_when_idle
        self.outcomes: list[Outcome] = []
        self.classified = 0
        self.quarantined = 0
        self._paused_for_disk = False

    def run(self) -> int:
        recovered = self.processor.recover()
        if recovered:
            log.info("recovered %d scan(s) interrupted by an earlier stop", recovered)
        observer = start_observer(self.tracker, self.config.ingest.polling)
        try:
            self.tracker.rescan()
            notify("READY=1")
            log.info(
                "ready: model %s %s (%s, %s); watching %s",
                self.model.manifest.name,
                self.model.manifest.version,
                self.model.variant,
                self.model.runtime.label,
                self.config.paths.inbox,
            )
            self._loop()
        finally:
            notify("STOPPING=1")
            observer.stop()
            observer.join()
            self.journal.close()
        log.info("stopped: %d classified, %d quarantined this run", self.classified, self.quarantined)
        return 0

    def _loop(self) -> None:
        ping_every = watchdog_interval()
        last_ping = last_rescan = time.monotonic()
        while not self.stopping.is_set():
            now = time.monotonic()
            if ping_every is not None and now - last_ping >= ping_every:
                notify("WATCHDOG=1")
                last_ping = now
            if now - last_rescan >= self.config.ingest.rescan_seconds:
                self.tracker.rescan()
                last_rescan = now
            if self._disk_low():
                self.stopping.wait(1.0)
                continue
            ready = self.tracker.ready()
            for path in ready:
                if self.stopping.is_set() or self._disk_low():
                    break
                self.tracker.forget(path)
                outcome = self.processor.handle(path)
                if outcome is not None:
                    self.outcomes.append(outcome)
                    self.classified += outcome.status == "classified"
                    self.quarantined += outcome.status == "quarantined"
                    notify(
                        f"STATUS={self.classified} classified, {self.quarantined} quarantined, "
                        f"{self.tracker.pending} waiting"
                    )
                if ping_every is not None:
                    notify("WATCHDOG=1")
                    last_ping = time.monotonic()
            if not ready:
                if self.exit_when_idle and self.tracker.pending == 0 and not any(self.config.paths.inbox.iterdir()):
                    log.info("inbox empty: exiting (--exit-when-idle)")
                    break
                self.stopping.wait(TICK_SECONDS)

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


def outcome_table(outcomes: list[Outcome], results: Path) -> str:
    """A plain-text table of what a run did, with the paths of the result files or the reason of a rejection."""
    width = max([len(outcome.input_name) for outcome in outcomes] + [5])
    lines = [f"{'input':<{width}}  {'outcome':<11} {'p(malig)':>8}  result / overlay / reason"]
    for outcome in outcomes:
        probability = "" if outcome.probability is None else f"{outcome.probability:.4f}"
        overlay = (outcome.result or "").removesuffix(".json") + ".gradcam.png"
        detail = outcome.reason or f"{results / (outcome.result or '')}  {results / overlay}"
        lines.append(f"{outcome.input_name:<{width}}  {outcome.label or outcome.status:<11} {probability:>8}  {detail}")
    return "\n".join(lines)


def install_signal_handlers(stopping: threading.Event) -> None:
    """SIGTERM/SIGINT set `stopping`: the scan in progress finishes, then the loop ends (installed before the
    model loads, so a stop during start-up is clean too)."""

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current scan, then stopping", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
