"""Reader submissions: regions marked on a film the device already answered, waiting to be analysed.

The web app never analyses: it writes one `Submission` per mark into ``<state>/submissions/<scan_id>.json`` (atomic
and fsynced before it answers ``202``), and the daemon takes it like any other arrival. The scan id is chosen when the
mark is submitted, so the web app can name the record that will carry the answer before it exists. The daemon then
records it (RECEIVED), links the archived film and writes the regions into processing (CLAIMED), and only then
deletes the file: after a crash at any point the submission is either still here or already in the journal under
its id, never lost and never taken twice.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge_app.errors import IngestError
from edge_app.fsutil import atomic_write, fsync_dir, move_durably
from edge_app.service.lifecycle import is_scan_id

SUBMISSIONS_FOLDER = "submissions"


@dataclass(frozen=True)
class Submission:
    """Everything the daemon needs to answer a reader's mark; nothing is read back from the file's name."""

    scan_id: str  # the record that will carry the answer
    answers: str  # the scan id of the earlier record of the same film
    input_name: str  # that record's input name (the new result is named after it)
    source_name: str  # where that record archived the film, relative to archive/
    regions: dict[str, Any]  # the regions document, in the `.roi.json` format
    reader: str  # the account that marked them
    submitted: float  # wall clock

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Submission:
        try:
            values = json.loads(data)
            return cls(
                str(values["scan_id"]),
                str(values["answers"]),
                str(values["input_name"]),
                str(values["source_name"]),
                dict(values["regions"]),
                str(values["reader"]),
                float(values["submitted"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise IngestError(f"a reader submission cannot be read ({type(exc).__name__}: {exc})") from exc

    def regions_bytes(self) -> bytes:
        return json.dumps(self.regions).encode()


class SubmissionQueue:
    """The folder both sides share: the web app puts, the daemon lists, reads and removes."""

    def __init__(self, state: Path) -> None:
        self.folder = state / SUBMISSIONS_FOLDER

    def _path(self, scan_id: str) -> Path:
        if not is_scan_id(scan_id):
            raise IngestError(f"{scan_id!r} is not a scan id")
        return self.folder / f"{scan_id}.json"

    def put(self, submission: Submission) -> None:
        """Durable when this returns: the file and its folder entry are on disk."""
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self._path(submission.scan_id), submission.to_bytes())

    def pending(self) -> list[str]:
        """The scan ids waiting, oldest first (ids are time-ordered)."""
        if not self.folder.is_dir():
            return []
        return sorted(path.stem for path in self.folder.glob("*.json") if is_scan_id(path.stem))

    def read(self, scan_id: str) -> Submission | None:
        """The submission, or None once it has been taken; IngestError if its file cannot be read as one."""
        try:
            return Submission.from_bytes(self._path(scan_id).read_bytes())
        except FileNotFoundError:
            return None

    def remove(self, scan_id: str) -> None:
        self._path(scan_id).unlink(missing_ok=True)
        fsync_dir(self.folder)

    def set_aside(self, scan_id: str, folder: Path) -> Path:
        """Move a submission that cannot be read out of the queue (into `folder`, kept for a person to look at)."""
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{scan_id}.submission.json"
        move_durably(self._path(scan_id), target)
        return target
