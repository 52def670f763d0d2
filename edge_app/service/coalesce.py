"""Work that follows a scan but is not part of its answer (regenerating the results page), done off the scan's path.

The scan loop only *asks* (`request`, which never blocks); one thread runs the work, at once after a quiet spell
and then at most once every `spacing` seconds: requests made meanwhile are merged into one run. A burst of 100
results regenerates the page a handful of times instead of 100 (on two cores the interpreter's threads would
otherwise share them with the page), and never on a scan's clock. `close` runs what is still asked for, then joins
the thread: the page always ends up describing every result written before the service stopped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger(__name__)


class CoalescedTask:
    """Runs `work` in its own thread after a `request`, merging the requests of each `spacing` seconds.

    A failure of `work` is logged and the thread carries on: what it produces is a convenience that the next
    request rebuilds, and it must never stop the service that answers scans."""

    def __init__(self, work: Callable[[], None], name: str, spacing: float = 1.0) -> None:
        self.work = work
        self.name = name
        self.spacing = spacing
        self._lock = threading.Lock()
        self._pending = False
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def request(self) -> None:
        with self._lock:
            self._pending = True
        self._wake.set()

    def close(self) -> None:
        """Run the work once more if it was asked for since its last run, then stop the thread (idempotent)."""
        self._closing.set()
        self._wake.set()
        self._thread.join()

    def _serve(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            closing = self._closing.is_set()  # read first: every request made before the close is pending now
            with self._lock:
                asked, self._pending = self._pending, False
            if asked:
                try:
                    self.work()
                except Exception:
                    log.exception("%s failed; it runs again after the next result", self.name)
            if closing:
                return
            self._closing.wait(self.spacing)  # rest; what is asked meanwhile waits for one run

    def __enter__(self) -> CoalescedTask:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
