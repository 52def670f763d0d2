"""The audit logs (``results.jsonl``, ``results.csv``): one line per scan, append-only, rotated by size, never cut.

A device runs for years; one file growing without bound ends on a full card, and a log rotated the usual way (keep
the last N, delete the rest) loses the oldest scans' lines. Here the file being written is renamed
``results.000001.jsonl`` (then ``000002``...) once it passes its size limit, at a line boundary, and the next line
starts a new file: no line is ever lost, and every segment is a complete log of its own (a CSV segment starts with
the header). Deleting old segments is the clinic's decision, not the device's.

Each line is written once even across a crash: before appending, the tail of the log (the current segment, and the
previous one when the current is nearly empty) is searched for the line's marker (its scan id).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from edge_app.fsutil import PendingSyncs, append_durably, fsync_dir

log = logging.getLogger(__name__)
TAIL_BYTES = 1 << 16
DEFAULT_MAX_BYTES = 64 << 20  # about 200,000 scans per segment


class AuditLog:
    """The log `path` (e.g. ``results/results.jsonl``) and its rotated segments; `header` starts every segment."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES, header: str = "") -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.header = header
        self._numbered = re.compile(rf"^{re.escape(path.stem)}\.(\d{{6}}){re.escape(path.suffix)}$")

    def segments(self) -> list[Path]:
        """Every segment, oldest first: the rotated ones by number, then the one being written."""
        return [path for _, path in self._rotated()] + ([self.path] if self.path.exists() else [])

    def _rotated(self) -> list[tuple[int, Path]]:
        folder = self.path.parent
        names = os.listdir(folder) if folder.is_dir() else []
        return sorted((int(found.group(1)), folder / name) for name in names if (found := self._numbered.match(name)))

    def lines(self) -> Iterator[str]:
        """Every line of every segment, oldest first (the CSV header of each segment included)."""
        for segment in self.segments():
            with segment.open(encoding="utf-8") as handle:
                yield from (line.rstrip("\n") for line in handle)

    def append_once(self, line: str, marker: str, syncs: PendingSyncs | None = None) -> bool:
        """Append `line` (ending in a newline) unless `marker` is in the log's tail already; rotate first when the
        segment is full. True when written (fsynced now, or by `syncs` with the rest of a batch)."""
        self._drop_torn_line()
        if marker in self._tail():
            return False
        if self.path.exists() and self.path.stat().st_size >= self.max_bytes:
            self._rotate()
        if not self.path.exists() and self.header:
            append_durably(self.path, self.header, syncs)
        append_durably(self.path, line, syncs)
        return True

    def _drop_torn_line(self) -> None:
        """A power cut during an append can leave the last line cut short, without its newline: that is the line
        being written (each append completes before the next scan's), so it is cut back to the last whole line and
        written again whole, instead of being merged with the next one or taken for written by its marker."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self.path.open("r+b") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) == b"\n":
                return
            handle.seek(max(0, handle.tell() - TAIL_BYTES))
            tail = handle.read()
            handle.truncate(handle.tell() - len(tail) + tail.rfind(b"\n") + 1)
            handle.flush()
            os.fsync(handle.fileno())
        log.warning("%s ended in a line cut short (a power cut?): it is written again whole", self.path.name)

    def _rotate(self) -> None:
        rotated = self._rotated()
        number = rotated[-1][0] + 1 if rotated else 1
        self.path.rename(self.path.with_name(f"{self.path.stem}.{number:06d}{self.path.suffix}"))
        fsync_dir(self.path.parent)

    def _tail(self) -> str:
        current = _tail(self.path) if self.path.exists() else ""
        if len(current) >= TAIL_BYTES // 2:
            return current
        rotated = self._rotated()
        return (_tail(rotated[-1][1]) if rotated else "") + current


def _tail(path: Path) -> str:
    with path.open("rb") as handle:
        handle.seek(max(0, os.path.getsize(path) - TAIL_BYTES))
        return handle.read().decode("utf-8", errors="replace")
