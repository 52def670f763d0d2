"""The durable outbox between the analysis daemon (which has no network) and the forwarder (which has nothing else).

``pending/<SOP Instance UID>.dcm`` waits to be sent; ``sent/<...>.dcm`` was acknowledged by the destination;
``retry.json`` holds each pending instance's failed attempts, its next try (wall clock, so a backoff holds across
restarts and reboots) and the last error. ``rejected/<...>.dcm`` was refused by the destination for good (a DICOMweb
4xx, a DIMSE status that says the instance itself is wrong): kept, with its reason in ``rejected.json``, never tried
again until an administrator puts it back (``mammo-edge dicom-requeue``). An instance is moved to ``sent/`` right
after the destination's success status, so an acknowledged answer is not sent again; only a crash in the instant
between the acknowledgement and that rename repeats one, and a repeat carries the same SOP Instance UID, which a PACS
stores once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from edge_app.fsutil import atomic_write, move_durably

RETRY_FILE = "retry.json"
REJECTED_FILE = "rejected.json"


@dataclass(frozen=True)
class Attempts:
    count: int
    next_try: float  # seconds since the epoch
    error: str


@dataclass(frozen=True)
class OutboxState:
    pending: int
    sent: int
    oldest_pending: float | None  # mtime of the oldest pending instance
    last_error: str | None
    rejected: int = 0
    last_rejection: str | None = None


class Outbox:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pending_folder = folder / "pending"
        self.sent_folder = folder / "sent"
        self.rejected_folder = folder / "rejected"
        for path in (self.pending_folder, self.sent_folder, self.rejected_folder):
            path.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, data: bytes) -> None:
        """Queue an instance once: a name already pending, sent or rejected is not queued again (a repeated write
        stage)."""
        if any((folder / name).exists() for folder in (self.sent_folder, self.pending_folder, self.rejected_folder)):
            return
        atomic_write(self.pending_folder / name, data)

    def pending(self) -> list[Path]:
        """Pending instances, oldest first (dot-files are unfinished writes)."""
        return [path for _, path in self._pending_by_age()]

    def _pending_by_age(self) -> list[tuple[float, Path]]:
        """Pending instances with their times, oldest first. One sent or refused while they are listed (the forwarder
        works beside the metrics and `mammo-edge status`) is left out, not an error."""
        found = []
        for path in self.pending_folder.iterdir():
            if path.name.startswith("."):
                continue
            try:
                found.append((path.stat().st_mtime, path.name, path))
            except FileNotFoundError:
                continue
        return [(mtime, path) for mtime, _, path in sorted(found)]

    def due(self, now: float) -> list[Path]:
        attempts = self._attempts()
        return [path for path in self.pending() if path.name not in attempts or attempts[path.name].next_try <= now]

    def mark_sent(self, name: str) -> None:
        move_durably(self.pending_folder / name, self.sent_folder / name)
        attempts = self._attempts()
        if attempts.pop(name, None) is not None:
            self._save(attempts)

    def note_failures(self, names: list[str], error: str, now: float, first_delay: float, max_delay: float) -> None:
        """One more failed attempt for each of `names`; the next try waits twice as long as the last (capped)."""
        attempts = self._attempts()
        for name in names:
            count = attempts[name].count + 1 if name in attempts else 1
            delay = min(max_delay, first_delay * 2 ** (count - 1))
            attempts[name] = Attempts(count, now + delay, error)
        self._save(attempts)

    def reject(self, name: str, error: str) -> None:
        """The destination refused `name` for good: kept in ``rejected/`` with `error`, no longer tried."""
        reasons = self._rejections()
        reasons.pop(name, None)  # the file keeps the order of the refusals: the last one is last
        reasons[name] = error
        atomic_write(self.folder / REJECTED_FILE, (json.dumps(reasons, indent=1) + "\n").encode())
        move_durably(self.pending_folder / name, self.rejected_folder / name)
        attempts = self._attempts()
        if attempts.pop(name, None) is not None:
            self._save(attempts)

    def requeue_rejected(self) -> list[str]:
        """Every rejected instance pending again, due now (after the cause was fixed); returns their names."""
        names = sorted(path.name for path in self.rejected_folder.iterdir() if not path.name.startswith("."))
        for name in names:
            move_durably(self.rejected_folder / name, self.pending_folder / name)
        atomic_write(self.folder / REJECTED_FILE, b"{}\n")
        return names

    def rejection(self, name: str) -> str | None:
        return self._rejections().get(name)

    def attempts(self, name: str) -> Attempts | None:
        return self._attempts().get(name)

    def state(self) -> OutboxState:
        pending = self._pending_by_age()
        attempts = self._attempts()
        latest = max(attempts.values(), key=lambda item: item.next_try, default=None)
        rejected = {path.name for path in self.rejected_folder.iterdir() if not path.name.startswith(".")}
        reasons = self._rejections()
        last = next((reasons[name] for name in reversed(reasons) if name in rejected), None)
        return OutboxState(
            len(pending),
            sum(1 for path in self.sent_folder.iterdir() if not path.name.startswith(".")),
            pending[0][0] if pending else None,
            None if latest is None else latest.error,
            len(rejected),
            last,
        )

    def prune_sent(self, retention_days: float, now: float | None = None) -> int:
        """Forget acknowledged instances older than `retention_days` (the results folder keeps its own copy)."""
        cutoff = (time.time() if now is None else now) - retention_days * 86400
        removed = 0
        for path in self.sent_folder.iterdir():
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        return removed

    def _attempts(self) -> dict[str, Attempts]:
        path = self.folder / RETRY_FILE
        if not path.exists():
            return {}
        return {name: Attempts(**values) for name, values in json.loads(path.read_text()).items()}

    def _rejections(self) -> dict[str, str]:
        path = self.folder / REJECTED_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def _save(self, attempts: dict[str, Attempts]) -> None:
        document = {name: vars(item) for name, item in attempts.items()}
        atomic_write(self.folder / RETRY_FILE, (json.dumps(document, indent=1) + "\n").encode())


class OutboxCollector(Collector):
    """The outbox as Prometheus gauges, read when the metrics are written: answers pending, the oldest's age, and
    those refused for good."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self.outbox.state()
        oldest = 0.0 if state.oldest_pending is None else max(0.0, time.time() - state.oldest_pending)
        for name, text, value in (
            ("mammo_edge_outbox_pending", "DICOM answers waiting to be sent", state.pending),
            ("mammo_edge_outbox_oldest_seconds", "Age of the oldest DICOM answer waiting", oldest),
            ("mammo_edge_outbox_rejected", "DICOM answers the destination refused for good", state.rejected),
        ):
            yield GaugeMetricFamily(name, text, value=value)
