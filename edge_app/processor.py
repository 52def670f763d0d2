"""Exactly-once processing of scans dropped in the inbox (the state machine is described in `edge_app.journal`).

An input is first *claimed* by renaming it into ``state/processing/<id>__<name>``: from then on it is owned by the
daemon and exists in exactly one place (processing, archive or quarantine), so it can never be lost. Every later
step is durable before the journal moves on, and `recover` resumes any step a crash interrupted.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edge_app.config import Config
from edge_app.errors import MammoEdgeError
from edge_app.fsutil import append_durably, atomic_write, move_durably, remove_temporaries, unique_stem
from edge_app.journal import Journal, ScanRecord
from edge_app.model import EdgeModel
from edge_app.results import analyse, result_document, write_result

log = logging.getLogger("mammo-edge")
AUDIT_JSONL = "results.jsonl"
AUDIT_CSV = "results.csv"
AUDIT_FIELDS = ("time", "id", "input", "sha256", "status", "label", "probability", "result", "duplicate_of", "reason")
TEMPORARY_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload", ".download")


def is_temporary_name(name: str) -> bool:
    """Names a copy in progress uses: hidden files and the usual partial-download suffixes."""
    lowered = name.lower()
    return name.startswith(".") or lowered.endswith(TEMPORARY_SUFFIXES)


@dataclass(frozen=True)
class Outcome:
    scan_id: str
    input_name: str
    status: str  # "classified" | "quarantined"
    label: str | None = None
    probability: float | None = None
    reason: str | None = None
    result: str | None = None  # result JSON file name (classified)


class Processor:
    def __init__(self, config: Config, model: EdgeModel, journal: Journal) -> None:
        self.paths = config.paths
        self.model = model
        self.journal = journal
        self.processing = self.paths.state / "processing"
        for folder in (
            self.paths.inbox,
            self.paths.results,
            self.paths.archive,
            self.paths.quarantine,
            self.processing,
        ):
            folder.mkdir(parents=True, exist_ok=True)

    # -- claiming ---------------------------------------------------------------------------------------------
    def claim(self, path: Path) -> Path | None:
        """Rename an inbox file into processing; None if it vanished meanwhile (someone else took it)."""
        relative = path.relative_to(self.paths.inbox).as_posix()
        scan_id = f"{time.time_ns():x}{secrets.token_hex(3)}"
        claimed = self.processing / f"{scan_id}__{relative.replace('/', '__')}"
        try:
            move_durably(path, claimed)
        except FileNotFoundError:
            return None
        return claimed

    def handle(self, path: Path) -> Outcome | None:
        """Claim and process one inbox entry (links and entries outside the inbox are quarantined unread)."""
        claimed = self.claim(path)
        if claimed is None:
            return None
        return self.process(claimed)

    # -- processing -------------------------------------------------------------------------------------------
    def process(self, claimed: Path) -> Outcome:
        scan_id, _, flat_name = claimed.name.partition("__")
        input_name = flat_name.replace("__", "/")
        record = self.journal.get(scan_id)
        if record is None or record.status in ("writing", "quarantining"):
            record = self._analyse_and_write(claimed, scan_id, input_name, record)
        return self._finish(record, claimed)

    def _analyse_and_write(self, claimed: Path, scan_id: str, input_name: str, record: ScanRecord | None) -> ScanRecord:
        if claimed.is_symlink():
            return self._quarantine(
                claimed,
                scan_id,
                input_name,
                record,
                None,
                "ingest",
                "SymbolicLink",
                "symbolic links are never followed; copy the scan itself into the inbox",
            )
        data = claimed.read_bytes()
        try:
            analysis = analyse(data, self.model)
        except MammoEdgeError as exc:  # input errors and model errors alike: quarantined with their stage
            return self._quarantine(
                claimed, scan_id, input_name, record, _sha256(data), exc.stage, type(exc).__name__, str(exc)
            )
        stem = (
            record.stem
            if record and record.stem
            else unique_stem(
                self.paths.results,
                Path(input_name).name.rsplit(".", 1)[0] or "scan",
                (".json", ".gradcam.png"),
                self.journal.reserved_stems(),
            )
        )
        first = self.journal.first_result_for(analysis.sha256)
        duplicate = record.duplicate_of if record else (f"{first}.json" if first else None)
        archive_name = (
            record.final_input_name
            if record and record.final_input_name
            else _free_name(self.paths.archive, Path(input_name).name)
        )
        self.journal.reserve(scan_id, input_name, analysis.sha256, "writing", stem, archive_name, duplicate)
        heatmap = f"{stem}.gradcam.png" if analysis.overlay_png is not None else None
        reserved = self.journal.get(scan_id)
        assert reserved is not None
        document = result_document(scan_id, input_name, analysis, self.model, heatmap, reserved.duplicate_of)
        write_result(self.paths.results, stem, document, analysis.overlay_png)
        prediction = analysis.prediction
        self.journal.set_status(scan_id, "done", prediction.label, prediction.probability)
        log.info(
            "%s %s: %s p=%.3f%s",
            scan_id,
            input_name,
            prediction.label,
            prediction.probability,
            f" (duplicate of {reserved.duplicate_of})" if reserved.duplicate_of else "",
        )
        done = self.journal.get(scan_id)
        assert done is not None
        return done

    def _quarantine(
        self,
        claimed: Path,
        scan_id: str,
        input_name: str,
        record: ScanRecord | None,
        sha256: str | None,
        stage: str,
        kind: str,
        reason: str,
    ) -> ScanRecord:
        name = (
            record.final_input_name
            if record and record.final_input_name
            else _free_name(self.paths.quarantine, Path(input_name).name, ".error.json")
        )
        self.journal.reserve(scan_id, input_name, sha256, "quarantining", None, name, None)
        error = {
            "id": scan_id,
            "input": input_name,
            "sha256": sha256,
            "stage": stage,
            "exception": kind,
            "reason": reason,
            "time": _now(),
        }
        atomic_write(self.paths.quarantine / f"{name}.error.json", (json.dumps(error, indent=2) + "\n").encode())
        self.journal.set_status(scan_id, "quarantined-written")
        log.warning("%s %s: rejected at %s (%s): %s", scan_id, input_name, stage, kind, reason)
        written = self.journal.get(scan_id)
        assert written is not None
        return written

    def _finish(self, record: ScanRecord, claimed: Path | None) -> Outcome:
        """Audit once, then move the input to archive or quarantine (idempotent)."""
        quarantined = record.status.startswith("quarantine")
        folder = self.paths.quarantine if quarantined else self.paths.archive
        assert record.final_input_name is not None
        if not record.audited:
            self._audit_once(record)
            self.journal.mark_audited(record.id)
        if claimed is not None and os.path.lexists(claimed):
            move_durably(claimed, folder / record.final_input_name)
        self.journal.set_status(record.id, "quarantined" if quarantined else "archived")
        reason = self._error_reason(record) if quarantined else None
        return Outcome(
            record.id,
            record.input_name,
            "quarantined" if quarantined else "classified",
            record.label,
            record.probability,
            reason,
            None if quarantined else f"{record.stem}.json",
        )

    def _audit_once(self, record: ScanRecord) -> None:
        jsonl = self.paths.results / AUDIT_JSONL
        marker = f'"id": "{record.id}"'
        if jsonl.exists() and marker in _tail(jsonl):
            return
        quarantined = record.status.startswith("quarantine")
        reason = self._error_reason(record) if quarantined else None
        entry = {
            "time": _now(),
            "id": record.id,
            "input": record.input_name,
            "sha256": record.sha256,
            "status": "quarantined" if quarantined else "classified",
            "label": record.label,
            "probability": None if record.probability is None else round(record.probability, 6),
            "result": None if quarantined else f"{record.stem}.json",
            "duplicate_of": record.duplicate_of,
            "reason": reason,
        }
        csv_path = self.paths.results / AUDIT_CSV
        if not csv_path.exists():
            append_durably(csv_path, ",".join(AUDIT_FIELDS) + "\n")
        buffer = io.StringIO()
        csv.writer(buffer).writerow(["" if entry[k] is None else entry[k] for k in AUDIT_FIELDS])
        append_durably(csv_path, buffer.getvalue())
        append_durably(jsonl, json.dumps(entry) + "\n")

    def _error_reason(self, record: ScanRecord) -> str:
        error = self.paths.quarantine / f"{record.final_input_name}.error.json"
        return str(json.loads(error.read_text())["reason"])

    # -- recovery ---------------------------------------------------------------------------------------------
    def recover(self) -> int:
        """Finish what a crash interrupted: remove temporaries, complete journal entries, reprocess claims."""
        for folder in (self.paths.results, self.paths.archive, self.paths.quarantine):
            removed = remove_temporaries(folder)
            if removed:
                log.info("removed %d unfinished temporary file(s) from %s", removed, folder)
        count = 0
        claimed = {path.name.partition("__")[0]: path for path in self.processing.iterdir()}
        for record in self.journal.unfinished():
            path = claimed.pop(record.id, None)
            if record.status in ("writing", "quarantining"):
                if path is not None:
                    self.process(path)
                    count += 1
                continue
            self._finish(record, path)
            count += 1
        for path in claimed.values():
            self.process(path)
            count += 1
        return count


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _free_name(folder: Path, name: str, companion: str = "") -> str:
    """`name` or `base (n).ext`, free in `folder` together with its `companion` file (name + companion)."""
    base, extension = os.path.splitext(name)
    return unique_stem(folder, base, (extension, extension + companion), set()) + extension


def _tail(path: Path, size: int = 1 << 16) -> str:
    with path.open("rb") as handle:
        handle.seek(max(0, os.path.getsize(path) - size))
        return handle.read().decode("utf-8", errors="replace")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
