"""The daemon's second lane: a scan's write and settle stages (overlay, answers, result JSON, audit lines, archive move)
run in a thread of their own while the loop analyses the next scan.

On a 2-core device the interpreter keeps both cores busy during an invoke; the write stage is mostly waiting on
fsync and a single-threaded PNG encoder, which now overlaps the next invoke instead of following it. Nothing about
durability changes: every stage still ends in its journal move, in the same order, one scan after another (one
thread, first in first out). At most `depth` analysed scans wait for the lane, so a burst waits in the inbox, not in
memory.

A storage error (disk full, read-only) stops the lane: the scans it still held stay ANALYSED in the journal, the
loop is told (`failure`) and retries as it did before, and recovery finishes them (their analysis done again from
the same bytes). Any other exception is a bug: it is handed to the loop (`raise_fatal`), which stops the service
as it would have had the write run in the loop itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable

from edge_app.service.analyse import Analysis
from edge_app.service.lifecycle import ScanRecord

log = logging.getLogger(__name__)
_STOP = None
LANE_NICENESS = 10
"""The lane runs below the loop's priority (Linux sets it per thread): the interpreter keeps its cores and the encoder
takes the cycles the invoke leaves. Measured on 2 cores, 224 px: 108 ms per file at equal priority, 89-95 ms at 10."""


class WriteBehind:
    def __init__(
        self,
        finish: Callable[[ScanRecord, Analysis | None], ScanRecord],
        done: Callable[[ScanRecord], None],
        storage_errors: tuple[type[Exception], ...],
        depth: int = 1,
    ) -> None:
        self.finish = finish
        self.done = done
        self.storage_errors = storage_errors
        self._queue: queue.Queue[tuple[ScanRecord, Analysis | None] | None] = queue.Queue(maxsize=depth)
        self._failure: Exception | None = None
        self._fatal: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="write-behind", daemon=True)
        self._thread.start()

    def submit(self, record: ScanRecord, analysis: Analysis | None) -> None:
        """Queue an analysed (or rejected) scan for its write stage; waits while `depth` scans are waiting."""
        while True:
            self.raise_fatal()
            try:
                self._queue.put((record, analysis), timeout=0.5)
                return
            except queue.Full:
                continue

    def failure(self) -> Exception | None:
        """The storage error that stopped the lane, if one did."""
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
        self._queue.join()

    def close(self) -> None:
        """Write what is queued, then stop and join the thread (idempotent)."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def _serve(self) -> None:
        with contextlib.suppress(AttributeError, OSError):  # no per-thread priority here: the lane runs as is
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LANE_NICENESS)
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                if self._failure is not None or self._fatal is not None:
                    continue  # left ANALYSED in the journal: recovery finishes it
                record, analysis = item
                try:
                    self.done(self.finish(record, analysis))
                except self.storage_errors as exc:
                    self._failure = exc
                except BaseException as exc:  # a bug: the loop re-raises it
                    log.exception("%s: the write stage failed unexpectedly", record.scan_id)
                    self._fatal = exc
            finally:
                self._queue.task_done()
