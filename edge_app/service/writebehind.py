"""The daemon's write lanes: a scan's Grad-CAM and overlay are made in one thread, and its journal moves, files and
archive move in another, while the loop analyses the next scan.

On a 2-core device the interpreter keeps a core busy during an invoke; the overlay (drawing and JPEG encoding,
which release the GIL) takes what it leaves, and the write stage, mostly waiting on fsync, overlaps both. The lanes
run at the loop's priority: niced (10), they starved behind the results page and the watcher and held the loop back
(96 px, 2 threads: 1.35-1.40 invokes per file at equal priority, 1.8-2.5 niced). The writer takes every scan
waiting for it as one batch (`ScanPipeline.resume_many`: one commit and one fsync per folder for
each step of the batch, not for each scan), in arrival order. Nothing about durability changes: every record takes
its steps in order, each ending in its journal move. At most `depth` scans wait for each lane, so a burst waits in
the inbox, not in memory.

A storage error (disk full, read-only) stops the writer: the scans it still held stay CLAIMED (or where the error
left them) in the journal, the loop is told (`failure`) and retries as it did before, and recovery finishes them
(their analysis done again from the same bytes). Any other exception is a bug: it is handed to the loop
(`raise_fatal`), which stops the service as it would have had the write run in the loop itself.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence

from edge_app.service.analyse import Analysis
from edge_app.service.lifecycle import ScanRecord
from edge_app.service.pipeline import Outcome, Taken

log = logging.getLogger(__name__)
_STOP = None
WRITE_BATCH = 16
"""Scans written as one batch at most: a crash redoes at most this many scans' writes."""


class WriteBehind:
    def __init__(
        self,
        finish: Callable[[Sequence[Taken]], list[ScanRecord]],
        done: Callable[[ScanRecord], None],
        storage_errors: tuple[type[Exception], ...],
        depth: int = 4,
    ) -> None:
        self.finish = finish
        self.done = done
        self.storage_errors = storage_errors
        self._incoming: queue.Queue[Taken | None] = queue.Queue(maxsize=depth)
        self._rendered: queue.Queue[Taken | None] = queue.Queue(maxsize=depth)
        self._failure: Exception | None = None
        self._fatal: BaseException | None = None
        self._renderer = threading.Thread(target=self._render, name="overlay-lane", daemon=True)
        self._writer = threading.Thread(target=self._serve, name="write-behind", daemon=True)
        self._renderer.start()
        self._writer.start()

    def submit(self, record: ScanRecord, outcome: Outcome | None) -> None:
        """Queue a claimed scan with its analysis (or refusal) for its write stage; waits while `depth` wait."""
        while True:
            self.raise_fatal()
            try:
                self._incoming.put((record, outcome), timeout=0.5)
                return
            except queue.Full:
                continue

    def failure(self) -> Exception | None:
        """The storage error that stopped the writer, if one did."""
        return self._failure

    def resume(self) -> None:
        """After the loop finished the interrupted scans itself: take new ones again."""
        self.drain()
        self._failure = None

    def raise_fatal(self) -> None:
        """Re-raise, in the caller's thread, an unexpected error of the write stage."""
        if self._fatal is not None:
            raise self._fatal

    def drain(self) -> None:
        """Wait until every queued scan is written (or, after a failure, left to recovery)."""
        self._incoming.join()  # an item reaches the writer's queue before it leaves this one
        self._rendered.join()

    def close(self) -> None:
        """Write what is queued, then stop and join the threads (idempotent)."""
        if self._renderer.is_alive():
            self._incoming.put(_STOP)
            self._renderer.join()
        if self._writer.is_alive():
            self._writer.join()

    def _render(self) -> None:
        while True:
            item = self._incoming.get()
            try:
                self._rendered.put(item if item is None else _explained(item))
                if item is None:
                    return
            finally:
                self._incoming.task_done()

    def _serve(self) -> None:
        while True:
            batch, stop = self._take_batch()
            try:
                if batch and self._failure is None and self._fatal is None:  # else left to recovery in the journal
                    self._write(batch)
            finally:
                for _ in range(len(batch) + stop):
                    self._rendered.task_done()
            if stop:
                return

    def _take_batch(self) -> tuple[list[Taken], bool]:
        """The scans waiting for the writer (one at least, WRITE_BATCH at most), and whether the stop followed them."""
        batch: list[Taken] = []
        item = self._rendered.get()
        while item is not None:
            batch.append(item)
            if len(batch) == WRITE_BATCH:
                return batch, False
            try:
                item = self._rendered.get_nowait()
            except queue.Empty:
                return batch, False
        return batch, True

    def _write(self, batch: list[Taken]) -> None:
        try:
            for record in self.finish(batch):
                self.done(record)
        except self.storage_errors as exc:
            self._failure = exc
        except BaseException as exc:  # a bug: the loop re-raises it
            log.exception("%s: the write stage failed unexpectedly", ", ".join(record.scan_id for record, _ in batch))
            self._fatal = exc


def _explained(item: Taken) -> Taken:
    """The item with its analysis explained and its overlay encoded (each kept). An error is left for the write stage,
    which meets it again and reports it with the scan (a bug) instead of this lane dying on it."""
    record, outcome = item
    if not isinstance(outcome, Analysis):
        return item
    try:
        explained = outcome.completed()
        if explained.overlay is not None:
            explained.overlay.jpeg()
    except Exception:
        return item
    return record, explained
