"""One scan's path, composed from the stages: claim -> analyse -> write -> settle, each ending in a journal move.

`resume_many` drives records from whatever states they are in to final ones; taking a new file and recovering after a
crash are the same call, so recovery is not a second implementation of the lifecycle. Records driven together take
each step together: every record's file work for the step, each folder they touched fsynced once, then all their
journal moves in one commit (a backlog costs one sync per step and folder, not one per scan); one record is a batch
of one. The daemon splits the path between its lanes: its loop claims new arrivals together (`claim_new`) and
reads, decodes and cuts each (`prepare`), its inference lane classifies them (`classify`; `examine` is both, and
neither writes anything), and its write lane records the analyses and finishes them (`resume_many`), in order, while
the loop cuts the next.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from edge_app.errors import IngestError, MammoEdgeError
from edge_app.fsutil import PendingSyncs, read_scan_file, remove_temporaries
from edge_app.regions import sidecar_kind
from edge_app.service.analyse import Analyser, Analysis, Sidecar, summary
from edge_app.service.claim import Claimer
from edge_app.service.journal import Journal
from edge_app.service.lifecycle import Failure, ScanRecord, ScanState
from edge_app.service.settle import Settler
from edge_app.service.writer import ResultWriter

log = logging.getLogger(__name__)
T = TypeVar("T")
SYMLINK_REASON = "symbolic links are never followed; copy the scan itself into the inbox"
REDROP = "drop the scan and its sidecar into the inbox again"
INTERNAL_REASON = "the analysis failed unexpectedly ({kind}: {error}); this is a bug: report it with this file"
RECOVERY_BATCH = 16
"""Unfinished records recovered together at most: their analyses (a film's pixels among them) wait in memory between
the steps, so a crash that left thousands does not hold thousands."""


@dataclass(frozen=True)
class Refusal:
    """What the analyse stage makes of a scan it refuses: why, and the scan's sha256 when its bytes were read."""

    failure: Failure
    sha256: str | None


@dataclass(frozen=True)
class Prepared:
    """A claimed scan read, decoded and cut into the model's inputs; its classification is still to come
    (`ScanPipeline.classify`: the daemon's inference lane makes it while its loop prepares the next scan)."""

    classify: Callable[[], Analysis]
    data: bytes  # hashed for the refusal, should the classification refuse the scan
    sidecar: Sidecar | None


Outcome = Analysis | Refusal
"""A claimed scan's analysis, or its refusal: what `examine` gives and the ANALYSED or REJECTED move records."""
Taken = tuple[ScanRecord, Outcome | None]
"""A record on its way, with its outcome when it is at hand (None: analysed when its step comes)."""


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
        return self.resume(self.claimer.receive(path, sidecar))

    def claim_new(self, arrivals: Sequence[tuple[Path, Path | None]]) -> list[ScanRecord]:
        """Receive inbox entries (each with its sidecar) and claim them together: their records in one commit, then
        their renames and claims as one step. Each comes back CLAIMED, or VANISHED if it left the inbox first."""
        with self.journal.batch():
            records = [self.claimer.receive(path, sidecar) for path, sidecar in arrivals]
        return [record for record, _ in self._step([(record, None) for record in records])]

    def claim_submission(self, scan_id: str) -> ScanRecord | None:
        """A reader's submission waiting in the queue, received and claimed; None when there is nothing left to do
        here (it was recorded before a crash: recovery drives that record; or it was unreadable and set aside)."""
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
        return self.claimer.claim(self.claimer.receive_submission(submission))

    def resume(self, record: ScanRecord, outcome: Outcome | None = None) -> ScanRecord:
        """Drive `record` to a final state (`resume_many` of one)."""
        return self.resume_many([(record, outcome)])[0]

    def resume_many(self, items: Sequence[Taken]) -> list[ScanRecord]:
        """Drive each record from its state to a final one, a step at a time for all of them (every step is
        idempotent, so a repeat is harmless). A CLAIMED or ANALYSED record's `outcome`, when it is still at hand, is
        recorded and written as it is; without one the scan is analysed (again: a crash lost the analysis, and the
        same bytes give it again)."""
        taken = list(items)
        while any(not record.state.final for record, _ in taken):
            taken = self._step(taken)
        return [record for record, _ in taken]

    def recover(self) -> int:
        """After a crash: drop half-written temporaries, finish every unfinished record, adopt orphaned claims."""
        for folder in (self.writer.results, self.settler.archive, self.settler.quarantine):
            removed = remove_temporaries(folder)
            if removed:
                log.info("removed %d unfinished temporary file(s) from %s", removed, folder)
        unfinished = self.journal.unfinished()
        for first in range(0, len(unfinished), RECOVERY_BATCH):
            self.resume_many([(record, None) for record in unfinished[first : first + RECOVERY_BATCH]])
        orphans = sorted(self.claimer.processing.iterdir())  # a scan's or a sidecar's: each is kept as a scan
        for path in orphans:
            self.resume(self.claimer.adopt(path))
        return len(unfinished) + len(orphans)

    def _step(self, taken: list[Taken]) -> list[Taken]:
        """Each unfinished record one state on: the file work of all of them, the folders and logs they touched
        fsynced once, then their journal moves in one commit (names reserved in it, so two records of one batch never
        get the same)."""
        syncs = PendingSyncs()
        moves = [self._work(record, outcome, syncs) for record, outcome in taken]
        syncs.flush()
        with self.journal.batch():
            return [move() for move in moves]

    def _work(self, record: ScanRecord, outcome: Outcome | None, syncs: PendingSyncs) -> Callable[[], Taken]:
        """Do the file work of `record`'s next step (its folders fsynced by `syncs`) and return its journal move."""
        state = record.state
        if state.final:
            return lambda: (record, outcome)
        if state is ScanState.RECEIVED and record.source_name is not None:
            syncs.flush()  # a reader's submission is claimed and committed on its own: nothing may wait behind it
            claimed = self.claimer.claim(record)
            return lambda: (claimed, None)
        if state is ScanState.RECEIVED:
            next_state = self.claimer.move_in(record, syncs)
            return lambda: (self.journal.advance(record, next_state), None)
        if state is ScanState.CLAIMED or (state is ScanState.ANALYSED and outcome is None):
            found = outcome if outcome is not None else self.examine(record)
            return lambda: (self._record(record, found), found)
        if state is ScanState.ANALYSED:
            assert isinstance(outcome, Analysis), "a refusal is recorded as REJECTED, never ANALYSED"
            self.writer.write_result(record, outcome.completed(), self.claimer.claimed_path(record), syncs)
            return lambda: (self.journal.advance(record, ScanState.WRITTEN), None)
        if state is ScanState.REJECTED:
            self.writer.write_rejection(record, syncs)
            return lambda: (self.journal.advance(record, ScanState.WRITTEN), None)
        assert state is ScanState.WRITTEN, state
        self.settler.settle(record, self.claimer.claimed_path(record), self.claimer.claimed_sidecar(record), syncs)
        settled = ScanState.QUARANTINED if record.rejected else ScanState.ARCHIVED
        return lambda: (self.journal.advance(record, settled), None)

    def examine(self, record: ScanRecord) -> Outcome:
        """Read and analyse a claimed scan: its analysis, or why it is refused. Nothing is written: the ANALYSED or
        REJECTED move records it (`resume_many`)."""
        prepared = self.prepare(record)
        return prepared if isinstance(prepared, Refusal) else self.classify(record, prepared)

    def prepare(self, record: ScanRecord) -> Prepared | Refusal:
        """Read a claimed scan (and its sidecar), decode it and cut its regions: ready to classify, or refused."""
        claimed = self.claimer.claimed_path(record)
        if claimed.is_symlink():
            return Refusal(Failure("ingest", "SymbolicLink", SYMLINK_REASON), None)
        try:
            data = read_scan_file(claimed, self.max_file_bytes, linked_from_archive=record.source_name is not None)
        except IngestError as exc:
            return Refusal(Failure(exc.stage, type(exc).__name__, str(exc)), None)
        except OSError as exc:
            return Refusal(Failure("ingest", type(exc).__name__, str(exc)), None)
        sidecar = None
        if record.sidecar_name is not None:
            try:
                sidecar_data = read_scan_file(self.claimer.claimed_sidecar(record), self.max_file_bytes)
            except IngestError as exc:
                failure = Failure("regions", type(exc).__name__, f"{record.sidecar_name}: {exc}")
                return _refusal(failure, data)
            except OSError:
                reason = f"its region file {record.sidecar_name} left the inbox before it could be read: {REDROP}"
                return _refusal(Failure("regions", "MissingSidecar", reason), data)
            kind = sidecar_kind(record.sidecar_name)
            assert kind is not None, "only a sidecar's name is recorded as one"
            sidecar = Sidecar(record.sidecar_name, kind, sidecar_data, record.reader)
        cut = partial(self.analyser.prepare, data, record.input_name, sidecar)
        return _guarded(record, data, sidecar, lambda: Prepared(cut(), data, sidecar))

    def classify(self, record: ScanRecord, prepared: Prepared) -> Outcome:
        """The prepared scan's analysis, or why it is refused (nothing is written)."""
        return _guarded(record, prepared.data, prepared.sidecar, prepared.classify)

    def _record(self, record: ScanRecord, outcome: Outcome) -> ScanRecord:
        """CLAIMED -> ANALYSED with names reserved, or -> REJECTED with the reason (an ANALYSED record analysed
        again after a crash keeps its names)."""
        if isinstance(outcome, Refusal):
            return self._reject(record, outcome)
        if record.state is ScanState.ANALYSED:
            return record
        analysed = self.journal.advance(
            record,
            ScanState.ANALYSED,
            sha256=outcome.sha256,
            result_stem=self.writer.free_stem(record.input_name, self.journal.result_stem_taken),
            settled_name=self.settler.reserve(record.input_name, rejected=False),
            duplicate_of=self.journal.first_result_for(outcome.sha256),
            status=outcome.status,
            label=outcome.label,
            probability=outcome.probability,
        )
        log.info(
            "%s %s: %s%s",
            record.scan_id,
            record.input_name,
            summary(outcome),
            f" (duplicate of {analysed.duplicate_of})" if analysed.duplicate_of else "",
        )
        return analysed

    def _reject(self, record: ScanRecord, refusal: Refusal) -> ScanRecord:
        """Refused: REJECTED with the failure, its quarantine name reserved."""
        failure = refusal.failure
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
            sha256=refusal.sha256,
            failure=failure,
            result_stem=None,
            settled_name=self.settler.reserve(record.input_name, rejected=True),
            duplicate_of=None,
            status=None,
            label=None,
            probability=None,
        )


def _guarded(record: ScanRecord, data: bytes, sidecar: Sidecar | None, stage: Callable[[], T]) -> T | Refusal:
    """`stage`'s result, or the refusal of the scan it raised on: the analysis's errors (input, region and model
    alike) with their stage, anything else as an internal error (one poisoned file must not stop the service, nor
    loop it on restarts)."""
    try:
        return stage()
    except MammoEdgeError as exc:
        reason = str(exc) if sidecar is None or exc.stage != "regions" else f"{sidecar.name}: {exc}"
        return _refusal(Failure(exc.stage, type(exc).__name__, reason), data)
    except Exception as exc:
        log.exception("%s %s: the analysis raised an unexpected error", record.scan_id, record.input_name)
        reason = INTERNAL_REASON.format(kind=type(exc).__name__, error=exc)
        return _refusal(Failure("analyse", "InternalError", reason), data)


def _refusal(failure: Failure, data: bytes) -> Refusal:
    """A refusal of a scan whose bytes were read (hashed here: an analysis hashes them itself)."""
    return Refusal(failure, hashlib.sha256(data).hexdigest())
