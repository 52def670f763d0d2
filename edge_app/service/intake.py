"""Finding complete scans in the inbox: watchdog events, a scan at start-up and a periodic rescan.

Events only say *where to look*; a file is ready once its size and modification time have not changed for
``settle_seconds`` (a copy over a slow network share or a scanner writing in chunks is never taken half-written).
Temporary names (``.*``, ``*.part``, ``*.tmp``, ``*.partial``...) are ignored until renamed. The clock is
injected, so the settle and pairing rules are tested with a fake one.

Pairing: a region sidecar (``NAME.roi.json``, ``NAME.mask.png``) is never a scan. A scan whose sidecar is in the inbox
is ready once both held still; a scan without one waits ``sidecar_wait`` more seconds for it, so scan and sidecar may
arrive in either order. A sidecar waits in the inbox for its scan (a scan answered ``needs_roi`` can be dropped again
beside it).
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from edge_app.regions import SIDECAR_SUFFIXES, sidecar_kind, sidecar_names, sidecar_suffix

TEMPORARY_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload", ".download")


def is_temporary_name(name: str) -> bool:
    """Names a copy in progress uses: hidden files and the usual partial-download suffixes."""
    lowered = name.lower()
    return name.startswith(".") or lowered.endswith(TEMPORARY_SUFFIXES)


def is_scan_entry(path: Path) -> bool:
    """Anything in the inbox but a folder: a file, a link, a pipe or a device (the last three are quarantined
    unread, so nothing dropped is left unanswered)."""
    return path.is_symlink() or not path.is_dir()


def _is_plain_file(path: Path) -> bool:
    """A regular file, not a link. Any error is "no": a sidecar name built from a 250-byte scan name is too long to
    exist (ENAMETOOLONG), which `Path.is_file` would raise."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


@dataclass(frozen=True)
class Arrival:
    """A scan ready to be taken, and the sidecar that came with it."""

    scan: Path
    sidecar: Path | None


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float


class InboxTracker:
    """Candidate paths and their stability; thread-safe (watchdog calls `note` from its own thread)."""

    def __init__(
        self,
        inbox: Path,
        settle_seconds: float,
        recursive: bool,
        limit: int,
        clock: Callable[[], float] = time.monotonic,
        sidecar_wait: float = 0.0,
    ) -> None:
        self.inbox = inbox
        self.settle = settle_seconds
        self.sidecar_wait = sidecar_wait
        self.recursive = recursive
        self.limit = limit
        self.clock = clock
        self._seen: dict[Path, _Seen | None] = {}
        self._sidecars: set[Path] = set()  # the tracked paths that are sidecars (kept, not recounted per scan)
        self._lock = threading.Lock()

    def note(self, path: Path) -> None:
        """Track `path`; its settle time starts now (the event's time, not the loop's next look at it)."""
        if not self._wanted(path):
            return
        with self._lock:
            if path not in self._seen and len(self._seen) < self.limit:
                self._seen[path] = self._look(path, self.clock())
                if sidecar_kind(path.name) is not None:
                    self._sidecars.add(path)

    def rescan(self) -> None:
        """Look at every entry of the inbox (missed events, network shares, the backlog at start-up)."""
        pattern = "**/*" if self.recursive else "*"
        for path in sorted(self.inbox.glob(pattern)):
            if is_scan_entry(path):
                self.note(path)

    def ready(self) -> list[Arrival]:
        """Scans (with their sidecars) that held still for the settle time, and waited for a sidecar when none came;
        symbolic links at once; oldest first."""
        now = self.clock()
        still: dict[Path, float] = {}  # path -> seconds it has held still
        links = []
        with self._lock:
            for path, seen in list(self._seen.items()):
                try:
                    if path.is_symlink():
                        links.append(path)
                        continue
                    status = path.stat()
                except FileNotFoundError:
                    del self._seen[path]
                    self._sidecars.discard(path)
                    continue
                current = (status.st_size, status.st_mtime_ns)
                if seen is None or (seen.size, seen.mtime_ns) != current:
                    self._seen[path] = _Seen(current[0], current[1], now)
                else:
                    still[path] = now - seen.since
        found = [Arrival(path, None) for path in links if sidecar_kind(path.name) is None]
        tracked_sidecars = self._tracked_sidecars()
        for path, held in still.items():
            if sidecar_kind(path.name) is not None or held < self.settle:
                continue
            sidecar = self._sidecar_of(path, tracked_sidecars)
            if sidecar is None and held >= self.settle + self.sidecar_wait:
                found.append(Arrival(path, None))
            elif sidecar is not None and still.get(sidecar, -1.0) >= self.settle:
                found.append(Arrival(path, sidecar))
        return found

    def seconds_until_due(self) -> float | None:
        """How long until the next tracked file will have held still for the settle time (or, settled without a
        sidecar, waited for one); None when no such moment lies ahead. The daemon sleeps that long at most, so a file
        is taken as soon as it settles instead of at the loop's next tick."""
        now = self.clock()
        with self._lock:
            starts = [now if seen is None else seen.since for seen in self._seen.values()]
        ahead = [
            moment
            for start in starts
            for moment in (start + self.settle, start + self.settle + self.sidecar_wait)
            if moment > now
        ]
        return min(ahead) - now if ahead else None

    @staticmethod
    def _look(path: Path, now: float) -> _Seen | None:
        try:
            status = path.stat()
        except OSError:
            return None
        return _Seen(status.st_size, status.st_mtime_ns, now)

    def _sidecar_of(self, scan: Path, tracked_sidecars: dict[str, Path]) -> Path | None:
        """The scan's sidecar in the inbox: ``NAME.roi.json`` or ``NAME.mask.png`` (the suffix in any case; never a
        symbolic link, which is not read)."""
        names = sidecar_names(scan.relative_to(self.inbox).as_posix())
        for name in names:
            candidate = self.inbox / name
            if _is_plain_file(candidate):
                self.note(candidate)
                return candidate
        tracked = tracked_sidecars.get(names[0][: -len(SIDECAR_SUFFIXES[0])])  # the scan's path less its suffix
        return tracked if tracked is not None and _is_plain_file(tracked) else None

    def _tracked_sidecars(self) -> dict[str, Path]:
        """The tracked sidecars by the scan they belong to (their relative path less the suffix, which may be in any
        case): made once per `ready`, so pairing a backlog of N scans is N lookups, not N scans of N paths."""
        with self._lock:
            tracked = sorted(self._sidecars)  # two spellings of one sidecar: the first by name, every time
        by_scan: dict[str, Path] = {}
        for path in tracked:
            name = path.relative_to(self.inbox).as_posix()
            suffix = sidecar_suffix(name)
            if suffix is not None:
                by_scan.setdefault(name[: -len(suffix)], path)
        return by_scan

    def forget(self, path: Path) -> None:
        with self._lock:
            self._seen.pop(path, None)
            self._sidecars.discard(path)

    @property
    def pending(self) -> int:
        """Scans seen and not yet taken (sidecars waiting for their scan are not counted)."""
        with self._lock:
            return len(self._seen) - len(self._sidecars)

    def oldest_mtime(self) -> float | None:
        """When the oldest scan waiting was last written (seconds since the epoch); None when none waits."""
        with self._lock:
            times = [seen.mtime_ns for path, seen in self._seen.items() if seen and path not in self._sidecars]
        return min(times) / 1e9 if times else None

    def _wanted(self, path: Path) -> bool:
        try:
            relative = path.relative_to(self.inbox)
        except ValueError:
            return False
        parts = relative.parts
        if not parts or (len(parts) > 1 and not self.recursive):
            return False
        return not any(is_temporary_name(part) for part in parts)


class _Handler(FileSystemEventHandler):
    def __init__(self, tracker: InboxTracker, wake: threading.Event) -> None:
        self.tracker = tracker
        self.wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        for attribute in ("dest_path", "src_path"):
            value = getattr(event, attribute, "")
            if value:
                self.tracker.note(Path(value if isinstance(value, str) else value.decode()))
        self.wake.set()


class _Waker(FileSystemEventHandler):
    """Any change in a watched folder (a reader's submission written) wakes the daemon's loop at once."""

    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.wake.set()


def start_observer(tracker: InboxTracker, polling: bool, wake: threading.Event, also: Path | None = None) -> Any:
    """A started watchdog observer feeding `tracker` (and setting `wake` on every event there and in `also`); the
    caller stops and joins it."""
    observer = PollingObserver(timeout=1.0) if polling else Observer()
    observer.schedule(_Handler(tracker, wake), str(tracker.inbox), recursive=tracker.recursive)
    if also is not None:
        also.mkdir(parents=True, exist_ok=True)
        observer.schedule(_Waker(wake), str(also))
    observer.start()
    return observer


def start_waker(folder: Path, wake: threading.Event) -> Any:
    """A started observer setting `wake` on any change in `folder` (another process's work arriving); the caller
    stops and joins it."""
    observer = Observer()
    observer.schedule(_Waker(wake), str(folder))
    observer.start()
    return observer
