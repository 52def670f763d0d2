"""The write stage: the only code that writes what a scan produced. ``run``, ``once`` and the benchmarks all use it.

For an analysed scan (classified per region, or ``needs_roi``): ``<stem>.gradcam.jpg`` and its thumbnail for the
results page, ``thumbs/<stem>.jpg`` (when there is heat to show; a cache, not fsynced), then ``<stem>.json`` (schema
``schemas/result.schema.json``), all atomic and in that order, so a result never names a missing overlay. For a
refused scan: ``<name>.error.json`` beside the quarantined input. Then one line in ``results.jsonl`` and
``results.csv`` (the audit logs, rotated by size without losing a line: `edge_app.service.audit`). Every write is
idempotent, so a crash anywhere in this stage is repaired by doing it again: files are replaced whole, and an audit
line whose scan id is already at the end of the log is not written twice.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from edge_app.detect import Candidate
from edge_app.fsutil import PendingSyncs, atomic_write, unique_stem, write_cache
from edge_app.model import ModelIdentity
from edge_app.service.analyse import Analysis, RegionAnswer
from edge_app.service.audit import DEFAULT_MAX_BYTES, AuditLog
from edge_app.service.lifecycle import OVERLAY_SUFFIX, ScanRecord

RESULT_SCHEMA_VERSION = 4
# 2: status, the image's facts and one entry per region; 3: who marked each, answers; 4: the detector's suggestions
# on a film left needs_roi, and its score for each region the device proposed
NOTICE = "Research software: NOT FOR CLINICAL USE. Not a medical device; do not use for diagnosis."
AUDIT_JSONL = "results.jsonl"
AUDIT_CSV = "results.csv"
AUDIT_FIELDS = (
    "time",
    "id",
    "input",
    "sha256",
    "status",
    "label",
    "probability",
    "result",
    "duplicate_of",
    "stage",
    "reason",
)
ERROR_SUFFIX = ".error.json"
RESULT_SUFFIXES = (".json", OVERLAY_SUFFIX, ".gradcam.png")  # and the PNG overlays earlier versions wrote


def result_schema() -> dict[str, Any]:
    text = resources.files("edge_app").joinpath("schemas/result.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _region_entry(answer: RegionAnswer) -> dict[str, Any]:
    return {
        "label": answer.label,
        "marked_as": answer.marked_as,
        "marked_by": answer.marked_by,
        "reader": answer.reader,
        "box": answer.box.as_list(),
        "crop": answer.crop.as_list(),
        "probability": round(answer.probability, 6),
        "logit": round(answer.logit, 6),
        "decision": answer.decision,
        "gradcam": None if answer.heatmap_peak is None else {"peak": list(answer.heatmap_peak)},
        "detector_score": None if answer.detector_score is None else round(answer.detector_score, 6),
    }


def _suggestion_entry(candidate: Candidate) -> dict[str, Any]:
    region = candidate.region
    return {
        "label": region.label,
        "x": round(region.cx, 1),
        "y": round(region.cy, 1),
        "radius": round(region.radius, 1),
        "score": round(candidate.score, 6),
    }


def result_document(record: ScanRecord, analysis: Analysis, identity: ModelIdentity) -> dict[str, Any]:
    """The result JSON of an analysed scan (everything comes from the record, the analysis and the model)."""
    image = analysis.image
    return {
        "schema": "mammo-edge/result",
        "schema_version": RESULT_SCHEMA_VERSION,
        "id": record.scan_id,
        "input": record.input_name,
        "sidecar": record.sidecar_name,
        "sha256": analysis.sha256,
        "status": analysis.status,
        "reason": analysis.reason,
        "image": {
            "format": image.format,
            "width": image.width,
            "height": image.height,
            "extent_mm": None if image.extent_mm is None else list(image.extent_mm),
            "laterality": image.laterality,
            "view": image.view,
        },
        "regions": [_region_entry(answer) for answer in analysis.regions],
        "suggestions": [_suggestion_entry(candidate) for candidate in analysis.suggestions],
        "suggestions_reason": analysis.suggestions_reason,
        "label": analysis.label,
        "probability": None if analysis.probability is None else round(analysis.probability, 6),
        "threshold": identity.threshold,
        "target_sensitivity": identity.target_sensitivity,
        "model": identity.stamp(),
        "heatmap": record.overlay_file if analysis.overlay is not None else None,
        "timings_ms": {key: round(value, 3) for key, value in analysis.timings_ms.items()},
        "created": now_iso(),
        "duplicate_of": record.duplicate_of,
        "answers": record.answers,
        "notice": NOTICE,
    }


def rejection_document(record: ScanRecord) -> dict[str, Any]:
    failure = record.failure
    assert failure is not None, "only a rejected record has a rejection document"
    return {
        "id": record.scan_id,
        "input": record.input_name,
        "sidecar": record.sidecar_name,
        "sha256": record.sha256,
        "status": "rejected",
        "stage": failure.stage,
        "exception": failure.kind,
        "reason": failure.reason,
        "time": now_iso(),
    }


class AnswerSink(Protocol):
    """A further answer to an analysed scan, written with its result (the DICOM report and capture). It must be
    idempotent: after a crash the write stage runs again."""

    def answer(self, record: ScanRecord, analysis: Analysis, source: Path) -> None: ...


class ResultWriter:
    """Writes into `results` (and rejections into `rejections`, the quarantine, when there is one); `sinks` add
    their answers to every analysed scan's, before its result JSON (so a result never precedes its answers);
    `after_write` runs once a scan's audit line is durable (the results page is regenerated there); each audit log
    starts a new segment once it passes `audit_max_bytes`."""

    def __init__(
        self,
        results: Path,
        identity: ModelIdentity,
        rejections: Path | None = None,
        sinks: tuple[AnswerSink, ...] = (),
        after_write: tuple[Callable[[], None], ...] = (),
        audit_max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.results = results
        self.identity = identity
        self.rejections = rejections
        self.sinks = sinks
        self.after_write = after_write
        self.audit_jsonl = AuditLog(results / AUDIT_JSONL, audit_max_bytes)
        self.audit_csv = AuditLog(results / AUDIT_CSV, audit_max_bytes, header=",".join(AUDIT_FIELDS) + "\n")
        results.mkdir(parents=True, exist_ok=True)

    def free_stem(self, input_name: str, is_reserved: Callable[[str], bool]) -> str:
        """The result stem for `input_name` (its file stem, `scan` if it has none) that neither names a file in the
        results folder nor is reserved; `name (2)`, `name (3)`... otherwise."""
        stem = Path(input_name).stem or "scan"
        return unique_stem(self.results, stem, RESULT_SUFFIXES, is_reserved)

    def write_result(
        self, record: ScanRecord, analysis: Analysis, source: Path | None = None, syncs: PendingSyncs | None = None
    ) -> Path:
        """Overlay, the sinks' answers (given the scan's file, `source`), result JSON and audit line of an analysed
        scan; returns the JSON's path. With `syncs`, the folder and the audit logs are fsynced with the batch's."""
        assert record.result_stem is not None, "the result stem is reserved before writing"
        if analysis.overlay is not None:  # rendered and encoded in the daemon's overlay lane, or here
            atomic_write(self.results / str(record.overlay_file), analysis.overlay.jpeg(), syncs)
            thumbnail = self.results / str(record.thumbnail_file)
            thumbnail.parent.mkdir(exist_ok=True)
            write_cache(thumbnail, analysis.overlay.thumbnail())  # the page makes it again if a power cut loses it
        if source is not None:
            for sink in self.sinks:
                sink.answer(record, analysis, source)
        target = self.results / str(record.result_file)
        atomic_write(target, _json_bytes(result_document(record, analysis, self.identity)), syncs)
        self._audit(record, analysis.status, syncs)
        return target

    def write_rejection(self, record: ScanRecord, syncs: PendingSyncs | None = None) -> Path | None:
        """The error JSON beside the quarantined input (when there is a quarantine) and the audit line."""
        target = None
        if self.rejections is not None:
            assert record.settled_name is not None, "the quarantine name is reserved before writing"
            target = self.rejections / f"{record.settled_name}{ERROR_SUFFIX}"
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, _json_bytes(rejection_document(record)), syncs)
        self._audit(record, "rejected", syncs)
        return target

    def _audit(self, record: ScanRecord, status: str, syncs: PendingSyncs | None) -> None:
        """One line per scan in each log; each log is checked on its own, so a crash between them is repaired."""
        failure = record.failure
        entry = {
            "time": now_iso(),
            "id": record.scan_id,
            "input": record.input_name,
            "sha256": record.sha256,
            "status": status,
            "label": record.label,
            "probability": None if record.probability is None else round(record.probability, 6),
            "result": record.result_file,
            "duplicate_of": record.duplicate_of,
            "stage": failure.stage if failure else None,
            "reason": failure.reason if failure else None,
        }
        buffer = io.StringIO()
        csv.writer(buffer).writerow([entry[key] for key in AUDIT_FIELDS])  # the csv module writes None as ""
        self.audit_csv.append_once(buffer.getvalue(), f",{record.scan_id},", syncs)
        self.audit_jsonl.append_once(json.dumps(entry, ensure_ascii=False) + "\n", f'"id": "{record.scan_id}"', syncs)
        for follow_up in self.after_write:
            follow_up()


def _json_bytes(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()
