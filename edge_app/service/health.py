"""What a monitor reads of the analysis service from outside its process: its heartbeat and its metrics.

The daemon keeps its own Prometheus registry (the official client): scans finished by status, refusals by the stage
that refused them, the model's time per scan as a histogram, the queue, the oldest waiting scan, free space, the
model as an info metric, and the outbox where answers are forwarded (its collector registered by the CLI). Every
`METRICS_SECONDS` (and when it stops) it writes them atomically to ``state/metrics.prom``, which the web app serves
at ``/metrics``, and to ``[metrics] textfile`` for node-exporter's textfile collector on a device without the web
app.

The heartbeat is ``state/heartbeat``: touched by the loop at most once a second, holding ``ok`` or the reason the
loop is paused (low disk, a storage error), removed when the service stops. ``/healthz`` answers 200 only while it is
fresher than the unit's watchdog interval and says ``ok``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edge_app.config import Config
from edge_app.fsutil import atomic_write
from edge_app.model import ModelIdentity
from edge_app.service.intake import InboxTracker
from edge_app.service.lifecycle import ScanRecord, ScanState

HEARTBEAT = "heartbeat"
METRICS = "metrics.prom"
METRICS_SECONDS = 10.0
LOOP_HEALTH_SECONDS = 30.0  # systemd/mammo-edge.service's WatchdogSec: a loop silent longer is not alive
HEALTHY = "ok"
ANALYSIS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
FOLDERS = ("inbox", "results", "state")


class Heartbeat:
    """``state/heartbeat``: its mtime the loop's last tick, its text ``ok`` or why the loop is paused."""

    def __init__(self, state: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = state / HEARTBEAT
        self.clock = clock
        self._said: str | None = None
        self._last = float("-inf")

    def beat(self, condition: str = HEALTHY) -> None:
        """The loop ticked: touch the file (at most once a second), rewrite it when the condition changed."""
        now = self.clock()
        if condition != self._said:
            temporary = self.path.with_name(f".{HEARTBEAT}.tmp")
            temporary.write_text(condition + "\n")  # not fsynced: a heartbeat need not survive a power cut
            os.replace(temporary, self.path)
            self._said, self._last = condition, now
        elif now - self._last >= 1.0:
            os.utime(self.path)
            self._last = now

    def stop(self) -> None:
        self.path.unlink(missing_ok=True)
        self._said = None


@dataclass(frozen=True)
class Health:
    healthy: bool
    reason: str  # one line


def loop_health(state: Path, now: float | None = None) -> Health:
    """Whether the analysis loop ticked within `LOOP_HEALTH_SECONDS` and is working, with the reason if not."""
    path = state / HEARTBEAT
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
        condition = path.read_text().strip()
    except FileNotFoundError:
        return Health(False, "the analysis service is not running (no heartbeat)")
    if age > LOOP_HEALTH_SECONDS:
        return Health(False, f"the analysis loop last ticked {age:.0f} s ago (more than {LOOP_HEALTH_SECONDS:.0f} s)")
    if condition != HEALTHY:
        return Health(False, f"the analysis loop is {condition}")
    return Health(True, f"{HEALTHY}: the analysis loop ticked {max(age, 0.0):.1f} s ago")


def serving_version(state: Path) -> str | None:
    """The model version the running service last wrote into its metrics (the info metric), None before it wrote
    any. A service that just restarted may not have yet: the old process's file then still names the old version."""
    try:
        text = (state / METRICS).read_text()
    except FileNotFoundError:
        return None
    for family in text_string_to_metric_families(text):
        if family.name == "mammo_edge_model_info":  # the text format carries an info metric as a gauge
            return next((sample.labels["version"] for sample in family.samples), None)
    return None


def device_health(state: Path, expected_version: str | None = None) -> Health:
    """`loop_health`, and with `expected_version` also that the service serves that model version: what a rollout
    waits for after it switched the model and restarted the service."""
    loop = loop_health(state)
    if not loop.healthy or expected_version is None:
        return loop
    serving = serving_version(state)
    if serving != expected_version:
        return Health(False, f"the service serves model {serving or 'unknown'}, not {expected_version} (yet)")
    return Health(True, f"{loop.reason}; serving model {serving}")


class DeviceMetrics:
    """The analysis service's metrics, in a registry of their own."""

    def __init__(self, config: Config, identity: ModelIdentity, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.registry = CollectorRegistry()
        registry = self.registry
        self.scans = Counter("mammo_edge_scans", "Scans finished, by status", ["status"], registry=registry)
        self.errors = Counter(
            "mammo_edge_errors", "Scans refused, by the stage that refused them", ["stage"], registry=registry
        )
        self.analysis = Histogram(
            "mammo_edge_analysis_seconds",
            "One scan's analysis (decode, regions, classifier; Grad-CAM and the overlay follow in their lane)",
            buckets=ANALYSIS_BUCKETS,
            registry=registry,
        )
        self.queue = Gauge("mammo_edge_queue_depth", "Scans in the inbox not yet taken", registry=registry)
        self.oldest = Gauge(
            "mammo_edge_oldest_waiting_seconds", "Age of the oldest scan waiting in the inbox", registry=registry
        )
        self.free = Gauge("mammo_edge_free_bytes", "Free space where the service writes", ["folder"], registry=registry)
        model = Info("mammo_edge_model", "The model serving", registry=registry)
        model.info(
            {
                "name": identity.name,
                "version": identity.version,
                "variant": identity.variant,
                "runtime": identity.runtime,
                "sha256": identity.sha256,
            }
        )
        self._last_written = float("-inf")

    def finished(self, record: ScanRecord) -> None:
        """A scan reached its final state."""
        archived = record.state is ScanState.ARCHIVED and record.status
        self.scans.labels(record.status if archived else record.state.value).inc()
        if record.failure is not None:
            self.errors.labels(record.failure.stage).inc()

    def analysed(self, seconds: float) -> None:
        self.analysis.observe(seconds)

    def write_due(self, tracker: InboxTracker) -> None:
        """Write the metrics if `METRICS_SECONDS` passed since the last time (the queue read only then: the loop
        asks at every tick)."""
        if self.clock() - self._last_written >= METRICS_SECONDS:
            self.write(tracker.pending, tracker.oldest_mtime())

    def write(self, waiting: int, oldest_mtime: float | None) -> None:
        """Sample the queue and the disks, then write ``state/metrics.prom`` (and the textfile) with every collector
        registered (the outbox's, where answers are forwarded: `edge_app.dicom.outbox.OutboxCollector`)."""
        now = self.clock()
        paths = self.config.paths
        self.queue.set(waiting)
        self.oldest.set(0.0 if oldest_mtime is None else max(0.0, now - oldest_mtime))
        for name in FOLDERS:
            self.free.labels(name).set(shutil.disk_usage(getattr(paths, name)).free)
        text = generate_latest(self.registry)
        atomic_write(paths.state / METRICS, text)
        if self.config.metrics.textfile:
            atomic_write(Path(self.config.metrics.textfile), text)
        self._last_written = now
