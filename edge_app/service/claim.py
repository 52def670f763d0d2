"""The claim stage: an inbox file gets a record first, then is renamed to ``processing/<scan_id>`` (and its region
sidecar, when one came with it, to ``processing/<scan_id>.sidecar``). A reader's submission is the other source:
its film is linked from the archive and its regions are written as the sidecar.

The record is durable before the rename, so a crash between the two is resolved from the record alone: the file
is either still in the inbox (claim it now), already in processing (the rename happened), or gone (someone else
took it: the record ends as VANISHED). No fact is ever parsed out of a file name.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from edge_app.fsutil import PendingSyncs, atomic_write, link_durably, move_durably
from edge_app.regions import sidecar_names
from edge_app.service.journal import Journal
from edge_app.service.lifecycle import ScanRecord, ScanState, received, resubmitted
from edge_app.service.submissions import Submission, SubmissionQueue

log = logging.getLogger(__name__)
CLAIMED_SIDECAR_SUFFIX = ".sidecar"


class Claimer:
    def __init__(
        self, inbox: Path, processing: Path, journal: Journal, archive: Path, submissions: SubmissionQueue
    ) -> None:
        self.inbox = inbox
        self.processing = processing
        self.journal = journal
        self.archive = archive
        self.submissions = submissions
        processing.mkdir(parents=True, exist_ok=True)

    def claimed_path(self, record: ScanRecord) -> Path:
        return self.processing / record.scan_id

    def claimed_sidecar(self, record: ScanRecord) -> Path:
        return self.processing / f"{record.scan_id}{CLAIMED_SIDECAR_SUFFIX}"

    def receive(self, path: Path, sidecar: Path | None = None) -> ScanRecord:
        """Record an inbox entry (RECEIVED) under its path relative to the inbox, exactly as dropped, with its
        sidecar's."""
        sidecar_name = None if sidecar is None else sidecar.relative_to(self.inbox).as_posix()
        return self.journal.insert(received(path.relative_to(self.inbox).as_posix(), sidecar_name))

    def receive_submission(self, submission: Submission) -> ScanRecord:
        """Record a reader's regions (RECEIVED) under the id the web app gave them; the film stays archived."""
        return self.journal.insert(
            resubmitted(
                submission.scan_id,
                submission.input_name,
                submission.source_name,
                sidecar_names(submission.input_name)[0],  # a .roi.json: the regions' format
                submission.answers,
                submission.reader,
                time.time(),
            )
        )

    def claim(self, record: ScanRecord) -> ScanRecord:
        """RECEIVED -> CLAIMED (the file, then its sidecar, are now the daemon's), or VANISHED if the scan left the
        inbox first. A sidecar that left is noticed by the analyse stage, which refuses the scan with the reason."""
        if record.source_name is not None:
            return self._claim_submission(record)
        return self.journal.advance(record, self.move_in(record))

    def move_in(self, record: ScanRecord, syncs: PendingSyncs | None = None) -> ScanState:
        """The file work of claiming an inbox entry (the journal move is the caller's, once the folders are fsynced,
        now or by `syncs`): the state it goes to, CLAIMED or VANISHED."""
        target = self.claimed_path(record)
        if not os.path.lexists(target):
            try:
                move_durably(self.inbox / record.input_name, target, syncs)
            except FileNotFoundError:
                log.warning("%s %s: left the inbox before it was claimed", record.scan_id, record.input_name)
                return ScanState.VANISHED
        sidecar = self.claimed_sidecar(record)
        if record.sidecar_name is not None and not os.path.lexists(sidecar):
            try:
                move_durably(self.inbox / record.sidecar_name, sidecar, syncs)
            except FileNotFoundError:
                log.warning(
                    "%s %s: its sidecar %s left the inbox", record.scan_id, record.input_name, record.sidecar_name
                )
        return ScanState.CLAIMED

    def _claim_submission(self, record: ScanRecord) -> ScanRecord:
        """The archived film is linked (copied across file systems) into processing and the submitted regions are
        written beside it; then the record is CLAIMED and only then the submission leaves the queue."""
        assert record.source_name is not None
        target = self.claimed_path(record)
        if not os.path.lexists(target):
            try:
                link_durably(self.archive / record.source_name, target)
            except FileNotFoundError:
                log.warning("%s: the film it answers (%s) is no longer in the archive", record.scan_id, record.answers)
                self.submissions.remove(record.scan_id)
                return self.journal.advance(record, ScanState.VANISHED)
        sidecar = self.claimed_sidecar(record)
        submission = self.submissions.read(record.scan_id)
        if submission is not None and not os.path.lexists(sidecar):
            atomic_write(sidecar, submission.regions_bytes())
        claimed = self.journal.advance(record, ScanState.CLAIMED)
        self.submissions.remove(record.scan_id)
        return claimed

    def adopt(self, path: Path) -> ScanRecord:
        """A file in processing that no record owns (left by an older version, or put there by hand): it becomes a
        new scan named as the file is, so it is processed rather than lost."""
        log.warning("adopting %s, found in processing with no journal record", path.name)
        record = self.journal.insert(received(path.name))
        move_durably(path, self.claimed_path(record))
        return self.journal.advance(record, ScanState.CLAIMED)
