"""One scan's path, composed from the stages: claim -> analyse -> write -> settle, each ending in a journal move.

`resume` drives a record from whatever state it is in to a final one; taking a new file and recovering after a
crash are the same call, so recovery is not a second implementation of the lifecycle.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from edge_app.errors import IngestError, MammoEdgeError
from edge_app.fsutil import read_scan_file, remove_temporaries
from edge_app.regions import sidecar_kind
from edge_app.service.analyse import Analyser, Analysis, Sidecar, summary
from edge_app.service.claim import Claimer
from edge_app.service.journal import Journal
from edge_app.service.lifecycle import Failure, ScanRecord, ScanState
from edge_app.service.settle import Settler
from edge_app.service.writer import ResultWriter

log = logging.getLogger(__name__)
SYMLINK_REASON = "symbolic links are never followed; copy the scan itself into the inbox"
REDROP = "drop the scan and its sidecar into the inbox again"
INTERNAL_REASON = "the analysis failed unexpectedly ({kind}: {error}); this is a bug: report it with this file"


class ScanPipeline:
    def __init__(
        self,
        journal: Journal,
        claimer: Claimer,
        analyser: Analyser,
        writer: ResultWriter,
        settler: Settler,
        max_file_bytes: int,
    ) -> None:
        self.max_file_bytes = max_file_bytes
        self.journal = journal
        self.claimer = claimer
        self.analyser = analyser
        self.writer = writer
        self.settler = settler

    def take(self, path: Path, sidecar: Path | None = None) -> ScanRecord:
        """Process one inbox entry (with the region sidecar that came with it) to its final state."""
        return self.resume(*self.analyse_new(path, sidecar))

    def analyse_new(self, path: Path, sidecar: Path | None = None) -> tuple[ScanRecord, Analysis | None]:
        """The first half of `take`: receive, claim and analyse; the record is ANALYSED (with its analysis) or
        REJECTED (or VANISHED), and `resume` finishes it (the daemon does that in its writer thread while the next
        scan is analysed)."""
        return self._analyse_received(self.claimer.receive(path, sidecar))

    def analyse_submission(self, scan_id: str) -> tuple[ScanRecord, Analysis | None] | None:
        """`analyse_new` for a reader's submission waiting in the queue; None when there is nothing left to do here
        (it was recorded before a crash: recovery drives that record; or it was unreadable and set aside)."""
        if self.journal.get(scan_id) is not None:
            return None
        try:
            submission = self.claimer.submissions.read(scan_id)
        except IngestError as exc:
            where = self.claimer.submissions.set_aside(scan_id, self.settler.quarantine)
            log.error("%s: %s; moved to %s", scan_id, exc, where)
            return None
        if submission is None:
            return None
        return self._analyse_received(self.claimer.receive_submission(submission))

    def _analyse_received(self, record: ScanRecord) -> tuple[ScanRecord, Analysis | None]:
        analysis: Analysis | None = None
        while record.state in (ScanState.RECEIVED, ScanState.CLAIMED):
            if record.state is ScanState.RECEIVED:
                record = self.claimer.claim(record)
            else:
                record, analysis = self._analyse(record)
        return record, analysis

    def resume(self, record: ScanRecord, analysis: Analysis | None = None) -> ScanRecord:
        """Drive `record` from its state to a final one (every step is idempotent, so a repeat is harmless); an
        ANALYSED record's `analysis`, when it is still at hand, is written as it is."""
        while not record.state.final:
            if record.state is ScanState.RECEIVED:
                record = self.claimer.claim(record)
            elif record.state is ScanState.CLAIMED:
                record, analysis = self._analyse(record)
            elif record.state is ScanState.ANALYSED and analysis is None:
                record, analysis = self._analyse(record)  # a crash lost the analysis: the same bytes give it again
            elif record.state is ScanState.ANALYSED:
                assert analysis is not None
                self.writer.write_result(record, analysis, self.claimer.claimed_path(record))
                record = self.journal.advance(record, ScanState.WRITTEN)
            elif record.state is ScanState.REJECTED:
                self.writer.write_rejection(record)
                record = self.journal.advance(record, ScanState.WRITTEN)
            elif record.state is ScanState.WRITTEN:
                self.settler.settle(record, self.claimer.claimed_path(record), self.claimer.claimed_sidecar(record))
                record = self.journal.advance(record, ScanState.QUARANTINED if record.rejected else ScanState.ARCHIVED)
        return record

    def recover(self) -> int:
        """After a crash: drop half-written temporaries, finish every unfinished record, adopt orphaned claims."""
        for folder in (self.writer.results, self.settler.archive, self.settler.quarantine):
            removed = remove_temporaries(folder)
            if removed:
                log.info("removed %d unfinished temporary file(s) from %s", removed, folder)
        unfinished = self.journal.unfinished()
        for record in unfinished:
            self.resume(record)
        orphans = sorted(self.claimer.processing.iterdir())  # a scan's or a sidecar's: each is kept as a scan
        for path in orphans:
            self.resume(self.claimer.adopt(path))
        return len(unfinished) + len(orphans)

    def _analyse(self, record: ScanRecord) -> tuple[ScanRecord, Analysis | None]:
        """CLAIMED (or ANALYSED after a crash) -> ANALYSED with names reserved, or -> REJECTED with the reason."""
        claimed = self.claimer.claimed_path(record)
        if claimed.is_symlink():
            return self._reject(record, None, Failure("ingest", "SymbolicLink", SYMLINK_REASON)), None
        try:
            data = read_scan_file(claimed, self.max_file_bytes, linked_from_archive=record.source_name is not None)
        except IngestError as exc:
            return self._reject(record, None, Failure(exc.stage, type(exc).__name__, str(exc))), None
        except OSError as exc:
            return self._reject(record, None, Failure("ingest", type(exc).__name__, str(exc))), None
        sidecar = None
        if record.sidecar_name is not None:
            try:
                sidecar_data = read_scan_file(self.claimer.claimed_sidecar(record), self.max_file_bytes)
            except IngestError as exc:
                failure = Failure("regions", type(exc).__name__, f"{record.sidecar_name}: {exc}")
                return self._reject(record, data, failure), None
            except OSError:
                reason = f"its region file {record.sidecar_name} left the inbox before it could be read: {REDROP}"
                return self._reject(record, data, Failure("regions", "MissingSidecar", reason)), None
            kind = sidecar_kind(record.sidecar_name)
            assert kind is not None, "only a sidecar's name is recorded as one"
            sidecar = Sidecar(record.sidecar_name, kind, sidecar_data, record.reader)
        try:
            analysis = self.analyser.analyse(data, record.input_name, sidecar)
        except MammoEdgeError as exc:  # input, region and model errors alike: refused with their stage
            reason = str(exc) if sidecar is None or exc.stage != "regions" else f"{sidecar.name}: {exc}"
            return self._reject(record, data, Failure(exc.stage, type(exc).__name__, reason)), None
        except Exception as exc:  # one poisoned file must not stop the service, nor loop it on restarts
            log.exception("%s %s: the analysis raised an unexpected error", record.scan_id, record.input_name)
            reason = INTERNAL_REASON.format(kind=type(exc).__name__, error=exc)
            return self._reject(record, data, Failure("analyse", "InternalError", reason)), None
        if record.state is ScanState.ANALYSED:
            return record, analysis
        analysed = self.journal.advance(
            record,
            ScanState.ANALYSED,
            sha256=analysis.sha256,
            result_stem=self.writer.free_stem(record.input_name, self.journal.result_stem_taken),
            settled_name=self.settler.reserve(record.input_name, rejected=False),
            duplicate_of=self.journal.first_result_for(analysis.sha256),
            status=analysis.status,
            label=analysis.label,
            probability=analysis.probability,
        )
        log.info(
            "%s %s: %s%s",
            record.scan_id,
            record.input_name,
            summary(analysis),
            f" (duplicate of {analysed.duplicate_of})" if analysed.duplicate_of else "",
        )
        return analysed, analysis

    def _reject(self, record: ScanRecord, data: bytes | None, failure: Failure) -> ScanRecord:
        """Refused with `failure`; `data` (the scan's bytes, when read) hashed here: an analysis hashes them itself."""
        log.warning(
            "%s %s: rejected at %s (%s): %s",
            record.scan_id,
            record.input_name,
            failure.stage,
            failure.kind,
            failure.reason,
        )
        return self.journal.advance(
            record,
            ScanState.REJECTED,
            sha256=None if data is None else hashlib.sha256(data).hexdigest(),
            failure=failure,
            result_stem=None,
            settled_name=self.settler.reserve(record.input_name, rejected=True),
            duplicate_of=None,
            status=None,
            label=None,
            probability=None,
        )
