"""The daemon's lanes after its loop: a scan is classified in one thread, its Grad-CAM and overlay are made in a
second, and its journal moves, files and archive move in a third, while the loop reads, decodes and cuts the next.

On a 2-core device the interpreter keeps the cores busy during an invoke; the inference lane invokes back to back
while the loop claims and cuts ahead of it (claims, reads and decodes cost a patch a third of a small model's invoke
when the same thread did them between invokes), the overlay (drawing and JPEG encoding, which release the GIL) takes
what the invokes leave, and the write stage, mostly waiting on fsync, overlaps all three. The lanes run at the loop's
priority: niced (10), they starved behind the results page and the watcher and held the loop back (96 px, 2 threads:
1.35-1.40 invokes per file at equal priority, 1.8-2.5 niced). The writer takes every scan waiting for it as one batch
(`ScanPipeline.resume_many`: one commit and one fsync per folder for each step of the batch, not for each scan), in
arrival order. Nothing about durability changes: every record takes its steps in order, each ending in its journal
move. At most `depth` scans wait for each lane, so a burst waits in the inbox, not in memory.

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
from typing import Any

from edge_app.service.analyse import Analysis
from edge_app.service.lifecycle import ScanRecord
from edge_app.service.pipeline import Outcome, Prepared, Refusal, Taken

log = logging.getLogger(__name__)
_STOP = None
WRITE_BATCH = 16
"""Scans written as one batch at most: a crash redoes at most this many scans' writes."""


Cut = tuple[ScanRecord, Prepared | Refusal | None]
"""A claimed scan as the loop hands it on: ready to classify, refused already, or (None) final already."""


class WriteBehind:
    def __init__(
        self,
        classify: Callable[[ScanRecord, Prepared], Outcome],
        finish: Callable[[Sequence[Taken]], list[ScanRecord]],
        done: Callable[[ScanRecord], None],
        storage_errors: tuple[type[Exception], ...],
        depth: int = 4,
    ) -> None:
        self.classify = classify
        self.finish = finish
        self.done = done
        self.storage_errors = storage_errors
        self._incoming: queue.Queue[Cut | None] = queue.Queue(maxsize=depth)
        self._classified: queue.Queue[Taken | None] = queue.Queue(maxsize=depth)
        self._rendered: queue.Queue[Taken | None] = queue.Queue(maxsize=depth)
        self._failure: Exception | None = None
        self._fatal: BaseException | None = None
        classifying = (self._incoming, self._classified, self._classified_item)
        rendering = (self._classified, self._rendered, _explained)
        self._lanes = [
            threading.Thread(target=_relay, args=classifying, name="inference-lane", daemon=True),
            threading.Thread(target=_relay, args=rendering, name="overlay-lane", daemon=True),
            threading.Thread(target=self._serve, name="write-behind", daemon=True),
        ]
        for lane in self._lanes:
            lane.start()

    def submit(self, record: ScanRecord, cut: Prepared | Refusal | None) -> None:
        """Queue a claimed scan, prepared (or refused) by the loop, for its classification and write stage; waits
        while `depth` wait."""
        while True:
            self.raise_fatal()
            try:
                self._incoming.put((record, cut), timeout=0.5)
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
        for lane in (self._incoming, self._classified, self._rendered):  # an item reaches the next before it leaves
            lane.join()

    def close(self) -> None:
        """Classify and write what is queued, then stop and join the threads (idempotent)."""
        if self._lanes[0].is_alive():
            self._incoming.put(_STOP)
        for lane in self._lanes:
            lane.join()

    def _classified_item(self, item: Cut) -> Taken:
        """The scan with its outcome (its refusal, or the analysis of what the loop prepared). The classification
        refuses a scan rather than raise; anything it raises all the same is a bug that the loop re-raises, and the
        scan stays CLAIMED for recovery."""
        record, cut = item
        if not isinstance(cut, Prepared):
            return record, cut
        try:
            return record, self.classify(record, cut)
        except BaseException as exc:
            log.exception("%s: the classification failed unexpectedly", record.scan_id)
            self._fatal = exc
            return record, None

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


def _relay(source: queue.Queue[Any], target: queue.Queue[Taken | None], work: Callable[[Any], Taken]) -> None:
    """One lane: each item from `source` through `work` into `target`, in order, until the stop (passed on)."""
    while True:
        item = source.get()
        try:
            target.put(item if item is None else work(item))
            if item is None:
                return
        finally:
            source.task_done()


def _explained(item: Taken) -> Taken:
    """The item with its analysis explained and its overlay and thumbnail encoded (each kept). An error is left for
    the write stage, which meets it again and reports it with the scan (a bug) instead of this lane dying on it."""
    record, outcome = item
    if not isinstance(outcome, Analysis):
        return item
    try:
        explained = outcome.completed()
        if explained.overlay is not None:
            explained.overlay.jpeg()
            explained.overlay.thumbnail()
    except Exception:
        return item
    return record, explained
