"""The claim stage: an inbox file gets a record first, then is renamed to ``processing/<scan_id>``.

The record is durable before the rename, so a crash between the two is resolved from the record alone: the file
is either still in the inbox (claim it now), already in processing (the rename happened), or gone (someone else
took it: the record ends as VANISHED). No fact is ever parsed out of a file name.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from edge_app.fsutil import move_durably
from edge_app.service.journal import Journal
from edge_app.service.lifecycle import ScanRecord, ScanState, received

log = logging.getLogger(__name__)


class Claimer:
    def __init__(self, inbox: Path, processing: Path, journal: Journal) -> None:
        self.inbox = inbox
        self.processing = processing
        self.journal = journal
        processing.mkdir(parents=True, exist_ok=True)

    def claimed_path(self, record: ScanRecord) -> Path:
        return self.processing / record.scan_id

    def receive(self, path: Path) -> ScanRecord:
        """Record an inbox entry (RECEIVED) under its path relative to the inbox, exactly as dropped."""
        return self.journal.insert(received(path.relative_to(self.inbox).as_posix()))

    def claim(self, record: ScanRecord) -> ScanRecord:
        """RECEIVED -> CLAIMED (the file is now the daemon's), or VANISHED if it left the inbox first."""
        target = self.claimed_path(record)
        if not os.path.lexists(target):
            try:
                move_durably(self.inbox / record.input_name, target)
            except FileNotFoundError:
                log.warning("%s %s: left the inbox before it was claimed", record.scan_id, record.input_name)
                return self.journal.advance(record, ScanState.VANISHED)
        return self.journal.advance(record, ScanState.CLAIMED)

    def adopt(self, path: Path) -> ScanRecord:
        """A file in processing that no record owns (left by an older version, or put there by hand): it becomes a
        new scan named as the file is, so it is processed rather than lost."""
        log.warning("adopting %s, found in processing with no journal record", path.name)
        record = self.journal.insert(received(path.name))
        move_durably(path, self.claimed_path(record))
        return self.journal.advance(record, ScanState.CLAIMED)
