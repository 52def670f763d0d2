"""The DICOM answers: a TID 1500 report and a Secondary Capture in the scan's study, valid by dciodvfy, readable by
dsrdump, the same instances however often they are written, queued once for forwarding."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from dicomfiles import encode, mammogram

from edge_app.dicom.answers import SC_SUFFIX, SR_SUFFIX, DicomAnswerWriter, build_answer
from edge_app.dicom.outbox import Outbox
from edge_app.model import ModelIdentity
from edge_app.regions import Box
from edge_app.service.analyse import CLASSIFIED, NEEDS_ROI, Analysis, ImageFacts, Overlay, RegionAnswer
from edge_app.service.lifecycle import ScanState, advance, received

IDENTITY = ModelIdentity("hybrid-test", "1.2", "hybrid", "int8", "model_int8.tflite", "ab" * 32, "fake", 0.42, 0.9)
FACTS = ImageFacts("DICOM", 400, 600, (40.0, 60.0), "R", "CC")
REGIONS = (
    RegionAnswer(
        "A", "box", "file", None, Box(10, 20, 110, 140), Box(0, 0, 150, 150), 0.873, 1.9, "malignant", (50, 60)
    ),
    RegionAnswer(
        "B", "circle", "sr", None, Box(200, 300, 260, 360), Box(180, 280, 280, 380), 0.125, -1.9, "benign", None
    ),
)
needs_tools = pytest.mark.skipif(
    shutil.which("dciodvfy") is None or shutil.which("dsrdump") is None,
    reason="dicom3tools (dciodvfy) and dcmtk (dsrdump) are not installed: `make test` installs them",
)


def _scan() -> bytes:
    pixels = np.random.default_rng(0).integers(0, 4096, (600, 400)).astype(np.uint16)
    return encode(mammogram(pixels))


def _overlay_png() -> bytes:
    ok, png = cv2.imencode(".png", np.full((64, 96, 3), 90, np.uint8))
    assert ok
    return png.tobytes()


CLASSIFIED_ANALYSIS = Analysis("00" * 32, CLASSIFIED, FACTS, REGIONS, None, Overlay.encoded(_overlay_png()), {})
NEEDS_ROI_ANALYSIS = Analysis("00" * 32, NEEDS_ROI, FACTS, (), "a full-field film: mark its regions", None, {})


def _errors(path: Path) -> list[str]:
    output = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    return [line for line in (output.stdout + output.stderr).splitlines() if line.startswith("Error")]


@needs_tools
@pytest.mark.parametrize("analysis", [CLASSIFIED_ANALYSIS, NEEDS_ROI_ANALYSIS], ids=["classified", "needs_roi"])
def test_report_and_capture_are_valid_and_in_the_scans_study(tmp_path: Path, analysis: Analysis) -> None:
    scan = _scan()
    source = pydicom.dcmread(io.BytesIO(scan))
    answer = build_answer(scan, "scan-1", analysis, IDENTITY)
    for name, instance in (("sr.dcm", answer.report), ("sc.dcm", answer.capture)):
        path = tmp_path / name
        instance.save_as(path, enforce_file_format=True)
        assert _errors(path) == [], name
        written = pydicom.dcmread(path)
        assert written.StudyInstanceUID == source.StudyInstanceUID
        assert written.SeriesInstanceUID != source.SeriesInstanceUID  # a new series of the same study
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID"):
            assert written[keyword].value == source[keyword].value, keyword
    evidence = answer.report.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert answer.capture.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert answer.capture.BurnedInAnnotation == "YES" and "NOT FOR CLINICAL USE" in answer.capture.ImageComments
    dump = subprocess.run(
        ["dsrdump", "+Pl", str(tmp_path / "sr.dcm")], capture_output=True, text=True, check=True
    ).stdout
    assert "NOT FOR CLINICAL USE" in dump and "sha256 " in dump and "hybrid-test 1.2" in dump
    if analysis.status == CLASSIFIED:
        assert 'NUM:(,,"Probability of cancer")="0.873"' in dump
        assert 'NUM:(,,"Probability of cancer")="0.125"' in dump
        assert '(86049000,SCT,"Malignant neoplasm, primary")' in dump and '(3898006,SCT,"Neoplasm, benign")' in dump
        assert dump.count("(POLYLINE,") == 2 and '"Decision threshold of the model")="0.42"' in dump
        assert answer.capture.Rows == 64 and answer.capture.Columns == 96  # the overlay itself
    else:
        assert "Probability of cancer" not in dump
        assert '"Not analysed: no region of interest was given"' in dump
        assert "a full-field film: mark its regions" in dump


def test_the_same_scan_gives_the_same_instances_and_another_scan_new_ones() -> None:
    scan = _scan()
    source = pydicom.dcmread(io.BytesIO(scan))
    first = build_answer(scan, "scan-1", CLASSIFIED_ANALYSIS, IDENTITY)
    again = build_answer(scan, "scan-1", CLASSIFIED_ANALYSIS, IDENTITY)
    other = build_answer(scan, "scan-2", CLASSIFIED_ANALYSIS, IDENTITY)
    for keyword in ("SOPInstanceUID", "SeriesInstanceUID"):
        assert first.report[keyword].value == again.report[keyword].value
        assert first.capture[keyword].value == again.capture[keyword].value
        assert first.report[keyword].value != other.report[keyword].value
    uids = {first.report.SOPInstanceUID, first.capture.SOPInstanceUID, source.SOPInstanceUID}
    assert len(uids) == 3


def test_a_capture_without_an_overlay_shows_the_scan_and_why(tmp_path: Path) -> None:
    capture = build_answer(_scan(), "scan-1", NEEDS_ROI_ANALYSIS, IDENTITY).capture
    assert capture.SamplesPerPixel == 3 and capture.Rows >= 512  # the film rendered, not an empty picture
    assert capture.PatientOrientation == ["A", "R"] and capture.ImageLaterality == "R"


def _record(stem: str) -> object:
    record = advance(received("image.dcm"), ScanState.CLAIMED)
    return advance(record, ScanState.ANALYSED, result_stem=stem)


def test_the_writer_answers_dicom_scans_only_and_queues_each_instance_once(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    writer = DicomAnswerWriter(tmp_path / "results", IDENTITY, outbox)
    png = tmp_path / "scan.png"
    png.write_bytes(_overlay_png())
    writer.answer(_record("scan"), CLASSIFIED_ANALYSIS, png)  # type: ignore[arg-type]
    assert not (tmp_path / "results" / "dicom").exists() and outbox.pending() == []
    scan = tmp_path / "scan.dcm"
    scan.write_bytes(_scan())
    record = _record("image")
    writer.answer(record, CLASSIFIED_ANALYSIS, scan)  # type: ignore[arg-type]
    report = pydicom.dcmread(tmp_path / "results" / "dicom" / f"image{SR_SUFFIX}")
    capture = pydicom.dcmread(tmp_path / "results" / "dicom" / f"image{SC_SUFFIX}")
    queued = sorted(path.name for path in outbox.pending())
    assert queued == sorted([f"{report.SOPInstanceUID}.dcm", f"{capture.SOPInstanceUID}.dcm"])
    outbox.mark_sent(f"{report.SOPInstanceUID}.dcm")
    writer.answer(record, CLASSIFIED_ANALYSIS, scan)  # type: ignore[arg-type]  (the write stage repeated)
    assert [path.name for path in outbox.pending()] == [f"{capture.SOPInstanceUID}.dcm"]
    assert outbox.state().sent == 1


@pytest.mark.parametrize(
    ("attributes", "logged"),
    [
        ({"PatientID": None, "StudyTime": None}, "the scan lacks PatientID, StudyTime, which an answer must copy"),
        ({"StudyTime": "99"}, "a header value it must copy is not valid DICOM (ValueError)"),
        ({"PatientSex": "X"}, "a header value it must copy is not valid DICOM (ValueError)"),
    ],
)
def test_a_scan_whose_header_cannot_be_copied_gets_no_dicom_answer_and_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, attributes: dict[str, object], logged: str
) -> None:
    """The daemon must not stop (the write stage would fail again after every restart): the result JSON stands,
    the reason is logged without the header's values."""
    pixels = np.random.default_rng(1).integers(0, 4096, (64, 64)).astype(np.uint16)
    scan = tmp_path / "scan.dcm"
    scan.write_bytes(encode(mammogram(pixels, PatientName="DOE^JANE", **attributes)))
    outbox = Outbox(tmp_path / "outbox")
    with caplog.at_level("WARNING", logger="edge_app.dicom.answers"):
        DicomAnswerWriter(tmp_path / "results", IDENTITY, outbox).answer(_record("scan"), CLASSIFIED_ANALYSIS, scan)  # type: ignore[arg-type]
    ours = " ".join(record.getMessage() for record in caplog.records if record.name.startswith("edge_app"))
    assert logged in ours and "DOE" not in ours and "'99'" not in ours
    assert not (tmp_path / "results" / "dicom").exists() and outbox.pending() == []
