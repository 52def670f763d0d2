"""The write stage on its own: the whole result document, the rejection document, the audit logs, and writing twice
being writing once (what crash recovery relies on)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from fakes import FAKE_IDENTITY, OVERLAY
from jsonschema import validate

from edge_app.regions import Box
from edge_app.service.analyse import Analysis, ImageFacts, Overlay, RegionAnswer
from edge_app.service.lifecycle import THUMBS, Failure, ScanRecord, ScanState
from edge_app.service.writer import AUDIT_FIELDS, NOTICE, ResultWriter, result_schema

FACTS = ImageFacts("DICOM", 400, 300, (40.0, 30.0), "L", "CC")
ANSWERS = (
    RegionAnswer(
        "A", "circle", "file", None, Box(1, 2, 3, 4), Box(0, 0, 8, 8), 0.12345678, -1.23456789, "benign", (2, 3)
    ),
    RegionAnswer(
        "B", "box", "reader", "dr.lee", Box(5, 6, 7, 8), Box(4, 4, 12, 12), 0.87654321, 1.9876543, "malignant", None
    ),
)


def _record(state: ScanState = ScanState.ANALYSED, **changes: object) -> ScanRecord:
    values: dict[str, object] = {
        "scan_id": "abc123",
        "input_name": "sub/film.dcm",
        "state": state,
        "received": 1.0,
        "updated": 2.0,
        "sidecar_name": "sub/film.roi.json",
        "status": "classified",
        "sha256": "e" * 64,
        "result_stem": "film",
        "settled_name": "sub/film.dcm",
        "label": "malignant",
        "probability": 0.87654321,
    }
    values.update(changes)
    return ScanRecord(**values)  # type: ignore[arg-type]


def test_a_result_document_holds_the_whole_answer(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path, FAKE_IDENTITY)
    analysis = Analysis("e" * 64, "classified", FACTS, ANSWERS, None, Overlay.encoded(OVERLAY), {"invoke_ms": 12.34567})
    path = writer.write_result(_record(duplicate_of="older.json", answers="0a1b2c", reader="dr.lee"), analysis)
    document = json.loads(path.read_text())
    validate(document, result_schema())
    created = document.pop("created")
    assert created.endswith("+00:00") and len(created) == len("2026-01-01T00:00:00.000+00:00")
    assert document == {
        "schema": "mammo-edge/result",
        "schema_version": 4,
        "id": "abc123",
        "input": "sub/film.dcm",
        "sidecar": "sub/film.roi.json",
        "sha256": "e" * 64,
        "status": "classified",
        "reason": None,
        "image": {
            "format": "DICOM",
            "width": 400,
            "height": 300,
            "extent_mm": [40.0, 30.0],
            "laterality": "L",
            "view": "CC",
        },
        "regions": [
            {
                "label": "A",
                "marked_as": "circle",
                "marked_by": "file",
                "reader": None,
                "box": [1, 2, 3, 4],
                "crop": [0, 0, 8, 8],
                "probability": 0.123457,
                "logit": -1.234568,
                "decision": "benign",
                "gradcam": {"peak": [2, 3]},
                "detector_score": None,
            },
            {
                "label": "B",
                "marked_as": "box",
                "marked_by": "reader",
                "reader": "dr.lee",
                "box": [5, 6, 7, 8],
                "crop": [4, 4, 12, 12],
                "probability": 0.876543,
                "logit": 1.987654,
                "decision": "malignant",
                "gradcam": None,
                "detector_score": None,
            },
        ],
        "label": "malignant",
        "probability": 0.876543,
        "threshold": 0.5,
        "target_sensitivity": 0.9,
        "model": FAKE_IDENTITY.stamp(),
        "heatmap": "film.gradcam.jpg",
        "timings_ms": {"invoke_ms": 12.346},
        "duplicate_of": "older.json",
        "answers": "0a1b2c",
        "notice": NOTICE,
        "suggestions": [],
        "suggestions_reason": None,
    }
    assert (tmp_path / "film.gradcam.jpg").read_bytes() == OVERLAY
    thumbnail = cv2.imread(str(tmp_path / THUMBS / "film.jpg"), cv2.IMREAD_COLOR)  # for the results page
    assert thumbnail.shape == (144, 240, 3) and np.abs(thumbnail.mean(axis=(0, 1)) - (40, 90, 160)).max() < 3


def test_needs_roi_has_no_overlay_and_says_why(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path, FAKE_IDENTITY)
    analysis = Analysis("e" * 64, "needs_roi", FACTS, (), "mark the masses", None, {})
    record = _record(status="needs_roi", label=None, probability=None, sidecar_name=None)
    document = json.loads(writer.write_result(record, analysis).read_text())
    validate(document, result_schema())
    assert (document["status"], document["reason"], document["regions"]) == ("needs_roi", "mark the masses", [])
    assert document["heatmap"] is None and document["label"] is None and document["probability"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["film.json", "results.csv", "results.jsonl"]


def test_the_audit_logs_get_one_line_per_scan_however_often_it_is_written(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path, FAKE_IDENTITY, rejections=tmp_path / "quarantine")
    analysis = Analysis("e" * 64, "classified", FACTS, ANSWERS, None, None, {})
    writer.write_result(_record(), analysis)
    writer.write_result(_record(), analysis)  # a crash after the audit line, then recovery
    refused = _record(
        ScanState.REJECTED,
        scan_id="def456",
        input_name='bad, "quoted".png',
        settled_name='bad, "quoted".png',
        status=None,
        label=None,
        probability=None,
        result_stem=None,
        sidecar_name=None,
        failure=Failure("decode", "TruncatedFileError", "the PNG data is incomplete"),
    )
    error_file = writer.write_rejection(refused)
    writer.write_rejection(refused)
    assert error_file == tmp_path / "quarantine" / 'bad, "quoted".png.error.json'
    error = json.loads(error_file.read_text())
    assert error.pop("time").endswith("+00:00")
    assert error == {
        "id": "def456",
        "input": 'bad, "quoted".png',
        "sidecar": None,
        "sha256": "e" * 64,
        "status": "rejected",
        "stage": "decode",
        "exception": "TruncatedFileError",
        "reason": "the PNG data is incomplete",
    }
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [tuple(row) for row in rows] == [AUDIT_FIELDS] * 2
    assert [(row["id"], row["status"], row["result"], row["stage"]) for row in rows] == [
        ("abc123", "classified", "film.json", ""),
        ("def456", "rejected", "", "decode"),
    ]
    assert rows[0]["probability"] == "0.876543" and rows[1]["input"] == 'bad, "quoted".png'
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == ["abc123", "def456"]
    assert lines[1]["reason"] == "the PNG data is incomplete" and lines[0]["duplicate_of"] is None


def test_without_a_quarantine_a_rejection_is_only_audited(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path, FAKE_IDENTITY)
    record = _record(ScanState.REJECTED, failure=Failure("decode", "K", "r"), result_stem=None)
    assert writer.write_rejection(record) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.jsonl"]


@pytest.mark.parametrize(
    ("name", "existing", "reserved", "stem"),
    [
        ("a/b/film.dcm", [], set(), "film"),
        ("film.dcm", ["film.json"], set(), "film (2)"),
        ("film.dcm", ["film.gradcam.jpg"], {"film (2)"}, "film (3)"),
        (".dcm", [], set(), ".dcm"),
        ("", [], set(), "scan"),
    ],
)
def test_result_stems_never_collide(
    tmp_path: Path, name: str, existing: list[str], reserved: set[str], stem: str
) -> None:
    writer = ResultWriter(tmp_path, FAKE_IDENTITY)
    for file in existing:
        (tmp_path / file).write_bytes(b"")
    assert writer.free_stem(name, reserved.__contains__) == stem


def test_documents_are_indented_and_keep_names_as_written(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path, FAKE_IDENTITY)
    analysis = Analysis("e" * 64, "classified", FACTS, ANSWERS, None, None, {})
    path = writer.write_result(_record(input_name="ünï 乳腺.dcm", result_stem="x"), analysis)
    text = path.read_text(encoding="utf-8")
    assert text.startswith('{\n  "schema": "mammo-edge/result",\n') and '"input": "ünï 乳腺.dcm"' in text
    assert text.endswith("}\n")
    assert '"input": "ünï 乳腺.dcm"' in (tmp_path / "results.jsonl").read_text(encoding="utf-8")


def test_a_long_audit_log_cut_inside_a_character_is_still_read(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path, FAKE_IDENTITY)
    analysis = Analysis("e" * 64, "classified", FACTS, ANSWERS, None, None, {})
    filler = ",".join(AUDIT_FIELDS) + "\n" + "é" * 40000 + "\n"  # the 64 KiB tail starts in a 2-byte character
    for name in ("results.csv", "results.jsonl"):
        (tmp_path / name).write_text(filler, encoding="utf-8")
    writer.write_result(_record(), analysis)
    writer.write_result(_record(), analysis)
    assert (tmp_path / "results.csv").read_text(encoding="utf-8").count(",abc123,") == 1
