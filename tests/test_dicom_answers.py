"""The DICOM answers: a TID 1500 report and a Secondary Capture in the scan's study, valid by dciodvfy, readable by
dsrdump, the same instances however often they are written, queued once for forwarding."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import warnings
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from dicomfiles import ARCHIVE_FLAWS, encode, mammogram

from edge_app.decode import decode_bytes
from edge_app.dicom.answers import SC_SUFFIX, SR_SUFFIX, DicomAnswerWriter, answer_uid, build_answer, read_header
from edge_app.dicom.headers import answer_source
from edge_app.dicom.outbox import Outbox
from edge_app.model import ModelIdentity
from edge_app.overlay import render
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


def _scan(**attributes: object) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 4096, (600, 400)).astype(np.uint16)
    return encode(mammogram(pixels, **attributes))


def _overlay_bgr() -> np.ndarray:
    """A coloured picture (blue left, red right): a capture that lost its colours or swapped them shows."""
    picture = np.zeros((64, 96, 3), np.uint8)
    picture[:, :48, 0] = 200
    picture[:, 48:, 2] = 150
    return picture


def _overlay_png() -> bytes:
    ok, png = cv2.imencode(".png", _overlay_bgr())
    assert ok
    return png.tobytes()


CLASSIFIED_ANALYSIS = Analysis("00" * 32, CLASSIFIED, FACTS, REGIONS, None, Overlay(_overlay_bgr), {})
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
        assert answer.capture.Rows == 64 and answer.capture.Columns == 96  # the overlay itself, to the pixel
        assert np.array_equal(answer.capture.pixel_array, cv2.cvtColor(_overlay_bgr(), cv2.COLOR_BGR2RGB))
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


def test_the_outbox_sends_the_oldest_first_whatever_the_names(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    for name, age in (("b.dcm", 300), ("a.dcm", 200), ("c.dcm", 200), ("d.dcm", 100)):
        outbox.put(name, b"x")
        os.utime(outbox.pending_folder / name, (1_000_000 - age, 1_000_000 - age))
    assert [path.name for path in outbox.pending()] == ["b.dcm", "a.dcm", "c.dcm", "d.dcm"]  # names break ties


@pytest.mark.parametrize(
    ("attributes", "logged"),
    [
        ({"PatientID": None, "StudyTime": None}, "the scan lacks a valid PatientID, which an answer must copy"),
        ({"StudyInstanceUID": "1.2.x"}, "the scan lacks a valid StudyInstanceUID, which an answer must copy"),
        ({"PatientID": "", "SeriesInstanceUID": None}, "lacks a valid SeriesInstanceUID, PatientID, which"),
    ],
)
def test_a_scan_that_does_not_say_whose_image_it_is_gets_no_dicom_answer_and_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, attributes: dict[str, object], logged: str
) -> None:
    """The daemon must not stop (the write stage would fail again after every restart): the result JSON stands,
    the reason is logged without the header's values."""
    pixels = np.random.default_rng(1).integers(0, 4096, (64, 64)).astype(np.uint16)
    scan = tmp_path / "scan.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydicom's own, once per process, about the invalid UID we write
        scan.write_bytes(encode(mammogram(pixels, PatientName="DOE^JANE", **attributes)))
    outbox = Outbox(tmp_path / "outbox")
    with caplog.at_level("WARNING", logger="edge_app.dicom.answers"):
        DicomAnswerWriter(tmp_path / "results", IDENTITY, outbox).answer(_record("scan"), CLASSIFIED_ANALYSIS, scan)  # type: ignore[arg-type]
    ours = " ".join(record.getMessage() for record in caplog.records if record.name.startswith("edge_app"))
    assert logged in ours and "DOE" not in ours and "1.2.x" not in ours
    assert not (tmp_path / "results" / "dicom").exists() and outbox.pending() == []


@needs_tools
@pytest.mark.parametrize("flaw", sorted(ARCHIVE_FLAWS))
@pytest.mark.parametrize("analysis", [CLASSIFIED_ANALYSIS, NEEDS_ROI_ANALYSIS], ids=["classified", "needs_roi"])
def test_every_header_real_archives_ship_is_answered_with_a_valid_report_and_capture(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, flaw: str, analysis: Analysis
) -> None:
    """The header corpus (tests/dicomfiles.py): each flaw alone and all together. Both answers are written and pass
    dciodvfy; a valid patient or study value is copied as it is, an invalid or absent one is written empty (type 2)
    or left out, and the one warning names the keywords, never the values."""
    pixels = np.random.default_rng(2).integers(0, 4096, (600, 400)).astype(np.uint16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydicom's own warnings about the invalid values we write
        source = mammogram(pixels, **{"PatientName": "DOE^JANE", **ARCHIVE_FLAWS[flaw]})
        scan = tmp_path / "scan.dcm"
        scan.write_bytes(encode(source))
    with caplog.at_level("WARNING", logger="edge_app.dicom.answers"):
        DicomAnswerWriter(tmp_path / "results", IDENTITY).answer(_record("scan"), analysis, scan)  # type: ignore[arg-type]
    warned = [record.getMessage() for record in caplog.records if record.name.startswith("edge_app")]
    made_invalid = {*ARCHIVE_FLAWS["invalid_values"], "PatientOrientation"}
    invalid = sorted(key for key, value in ARCHIVE_FLAWS[flaw].items() if key in made_invalid and value)
    for suffix in (SR_SUFFIX, SC_SUFFIX):
        path = tmp_path / "results" / "dicom" / f"scan{suffix}"
        assert _errors(path) == [], (flaw, suffix)
        written = pydicom.dcmread(path)
        assert written.StudyInstanceUID == source.StudyInstanceUID and written.PatientID == source.PatientID
        for keyword in ("PatientName", "PatientBirthDate", "PatientSex", "StudyID", "StudyDate", "StudyTime"):
            given = source.get(keyword)
            valid = given is not None and keyword not in invalid
            assert written[keyword].value == (given if valid else ""), (flaw, keyword)
    if invalid:
        (note,) = warned
        assert all(keyword in note for keyword in invalid) and "female" not in note and "10:15" not in note
    assert "DOE" not in " ".join(warned) and not any("no DICOM answer" in line for line in warned)


def _tree(items: object, depth: int = 0) -> list[str]:
    """The report's content tree, one line per item: relationship, value type, concept name and value."""
    lines = []
    for item in items:  # type: ignore[attr-defined]
        line = f"{'  ' * depth}{item.RelationshipType} {item.ValueType} {item.ConceptNameCodeSequence[0].CodeMeaning}"
        if item.ValueType == "CODE":
            code = item.ConceptCodeSequence[0]
            line += f" = {code.CodeValue} {code.CodingSchemeDesignator} {code.CodeMeaning}"
        elif item.ValueType == "NUM":
            measured = item.MeasuredValueSequence[0]
            line += f" = {measured.NumericValue} [{measured.MeasurementUnitsCodeSequence[0].CodeValue}]"
        elif item.ValueType in ("TEXT", "UIDREF"):
            line += f" = {item.get('TextValue') or item.get('UID')}"
        elif item.ValueType == "SCOORD":
            line += f" = {item.GraphicType} {[float(value) for value in item.GraphicData]}"
        elif item.ValueType == "IMAGE":
            line += f" = {item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID}"
        lines.append(line)
        if "ContentSequence" in item:
            lines += _tree(item.ContentSequence, depth + 1)
    return lines


def _algorithm(depth: int) -> list[str]:
    indent = "  " * depth
    return [
        f"{indent}HAS CONCEPT MOD TEXT Algorithm Name = hybrid-test",
        f"{indent}HAS CONCEPT MOD TEXT Algorithm Version = 1.2",
        f"{indent}HAS CONCEPT MOD TEXT Algorithm Parameters = variant int8",
        f"{indent}HAS CONCEPT MOD TEXT Algorithm Parameters = file model_int8.tflite",
        f"{indent}HAS CONCEPT MOD TEXT Algorithm Parameters = sha256 {'ab' * 32}",
    ]


def _region(label: str, probability: str, decision: str, outline: list[float], image: str, source: str) -> list[str]:
    return [
        "  CONTAINS CONTAINER Measurement Group",
        f"    HAS OBS CONTEXT TEXT Tracking Identifier = region {label}",
        f"    HAS OBS CONTEXT UIDREF Tracking Unique Identifier = {answer_uid('scan-1', f'region {label}')}",
        "    CONTAINS CODE Finding = 4147007 SCT Mass",
        *_algorithm(2),
        f"    CONTAINS NUM Probability of cancer = {probability} [1]",
        *_algorithm(3),
        "    CONTAINS NUM Decision threshold of the model = 0.42 [1]",
        *_algorithm(3),
        f"    CONTAINS CODE Decision at the model's threshold = {decision}",
        f"    CONTAINS CODE Source of the region = {source}",
        f"    CONTAINS SCOORD Image Region = POLYLINE {[float(value) for value in outline]}",
        f"      SELECTED FROM IMAGE Source = {image}",
    ]


def _head() -> list[str]:
    return [
        "HAS CONCEPT MOD CODE Language of Content Item and Descendants = en-US RFC5646 English (United States)",
        "HAS OBS CONTEXT CODE Observer Type = 121007 DCM Device",
        f"HAS OBS CONTEXT UIDREF Device Observer UID = {answer_uid('ab' * 32, 'device')}",
        "HAS OBS CONTEXT TEXT Device Observer Name = hybrid-test",
        "HAS OBS CONTEXT TEXT Device Observer Manufacturer = mammo-edge",
        "HAS OBS CONTEXT TEXT Device Observer Model Name = hybrid-test 1.2",
        "HAS CONCEPT MOD CODE Procedure reported = 71651007 SCT Mammography",
    ]


def _library(image: str) -> list[str]:
    return [
        "CONTAINS CONTAINER Image Library",
        "  CONTAINS CONTAINER Image Library Group",
        f"    CONTAINS IMAGE Source = {image}",
        "      HAS ACQ CONTEXT CODE Modality = MG DCM Mammography",
        "      HAS ACQ CONTEXT NUM Pixel Data Rows = 600.0 [{pixels}]",
        "      HAS ACQ CONTEXT NUM Pixel Data Columns = 400.0 [{pixels}]",
        "      HAS ACQ CONTEXT TEXT Patient Orientation Row = A",
        "      HAS ACQ CONTEXT TEXT Patient Orientation Column = R",
        "      HAS ACQ CONTEXT NUM Horizontal Pixel Spacing = 0.1 [mm]",
        "      HAS ACQ CONTEXT NUM Vertical Pixel Spacing = 0.1 [mm]",
    ]


NOTICE_TEXT = "Research software: NOT FOR CLINICAL USE. Not a medical device; do not use for diagnosis."
MODEL_TEXT = f"Model hybrid-test 1.2 (int8, sha256 {'ab' * 32})."


def test_the_report_of_two_regions_item_by_item() -> None:
    """Every item a PACS or a reader's SR viewer shows: the device, each region's outline on the source image, its
    probability and decision at the threshold with the algorithm, and the text comment a viewer shows first."""
    scan = _scan()
    image = read_header(scan).SOPInstanceUID
    report = build_answer(scan, "scan-1", CLASSIFIED_ANALYSIS, IDENTITY).report
    findings = (
        "region A: probability of malignancy 0.873, malignant at threshold 0.420; "
        "region B: probability of malignancy 0.125, benign at threshold 0.420"
    )
    assert _tree(report.ContentSequence) == [
        *_head(),
        *_library(image),
        "CONTAINS CONTAINER Imaging Measurements",
        *_region(
            "A",
            "0.873",
            "86049000 SCT Malignant neoplasm, primary",
            [10, 20, 110, 20, 110, 140, 10, 140, 10, 20],
            image,
            "ME-0008 99MAMMOEDGE Given with the scan",
        ),
        *_region(
            "B",
            "0.125",
            "3898006 SCT Neoplasm, benign",
            [200, 300, 260, 300, 260, 360, 200, 360, 200, 300],
            image,
            "ME-0010 99MAMMOEDGE Given by a measurement report",
        ),
        f"CONTAINS TEXT Comment = {NOTICE_TEXT} {findings}. {MODEL_TEXT}",
    ]
    assert report.ContentSequence[-1].ConceptNameCodeSequence[0].CodeValue == "121106"
    assert report.ContentSequence[-1].ConceptNameCodeSequence[0].CodingSchemeDesignator == "DCM"
    assert (report.Manufacturer, report.SeriesNumber, report.InstanceNumber) == ("mammo-edge", 9901, 1)
    assert report.SeriesDescription == "mammo-edge report: research use only, not for clinical use"
    assert (report.CompletionFlag, report.VerificationFlag) == ("COMPLETE", "UNVERIFIED")


def test_the_report_of_a_scan_not_analysed_says_why_and_omits_an_image_without_orientation() -> None:
    """An image without PatientOrientation cannot be described in the image library: the report goes without one."""
    scan = _scan(PatientOrientation=None)
    report = build_answer(scan, "scan-1", NEEDS_ROI_ANALYSIS, IDENTITY).report
    assert _tree(report.ContentSequence) == [
        *_head(),
        "CONTAINS CONTAINER Imaging Measurements",
        "  CONTAINS CONTAINER Measurement Group",
        "    HAS OBS CONTEXT TEXT Tracking Identifier = whole image",
        f"    HAS OBS CONTEXT UIDREF Tracking Unique Identifier = {answer_uid('scan-1', 'image')}",
        "    CONTAINS CODE Analysis status = ME-0004 99MAMMOEDGE Not analysed: no region of interest was given",
        f"CONTAINS TEXT Comment = {NOTICE_TEXT} Not analysed: a full-field film: mark its regions. {MODEL_TEXT}",
    ]


def test_answer_uids_never_change_across_versions() -> None:
    """A PACS that received an answer before an update must receive the same instance after it, not a second one."""
    assert answer_uid("scan-1", "report") == "1.2.826.0.1.3680043.8.498.12879639314505584762220631980997226553"
    answer = build_answer(_scan(), "scan-1", CLASSIFIED_ANALYSIS, IDENTITY)
    assert answer.report.SOPInstanceUID == answer_uid("scan-1", "report")
    assert answer.report.SeriesInstanceUID == answer_uid("scan-1", "report series")
    assert answer.capture.SOPInstanceUID == answer_uid("scan-1", "capture")
    assert answer.capture.SeriesInstanceUID == answer_uid("scan-1", "capture series")


def test_the_capture_is_the_overlay_in_rgb_with_its_provenance() -> None:
    capture = build_answer(_scan(), "scan-1", CLASSIFIED_ANALYSIS, IDENTITY).capture
    assert np.array_equal(capture.pixel_array, cv2.cvtColor(_overlay_bgr(), cv2.COLOR_BGR2RGB))
    assert (capture.Manufacturer, capture.SeriesNumber, capture.InstanceNumber) == ("mammo-edge", 9902, 1)
    assert capture.SeriesDescription == "mammo-edge overlay: research use only, not for clinical use"
    assert capture.DerivationDescription == (
        "mammo-edge overlay: regions, probabilities and Grad-CAM over the source image"
    )
    assert (capture.ConversionType, capture.BurnedInAnnotation, capture.ImageComments) == ("WSD", "YES", NOTICE_TEXT)


@pytest.mark.parametrize(
    ("analysis", "headline"),
    [
        (NEEDS_ROI_ANALYSIS, "NOT ANALYSED: no region of interest"),
        (Analysis("00" * 32, CLASSIFIED, FACTS, REGIONS, None, None, {}), "no heatmap"),
    ],
    ids=["needs_roi", "classified_without_overlay"],
)
def test_a_capture_without_an_overlay_is_the_scan_under_its_headline(analysis: Analysis, headline: str) -> None:
    scan = _scan()
    capture = build_answer(scan, "scan-1", analysis, IDENTITY).capture
    expected = cv2.cvtColor(render(decode_bytes(scan).pixels, [], headline), cv2.COLOR_BGR2RGB)
    assert np.array_equal(capture.pixel_array, expected)


@pytest.mark.parametrize(
    ("attributes", "orientation", "laterality"),
    [
        ({"ImageLaterality": None, "Laterality": "L"}, ["A", "R"], ("Laterality", "L")),
        ({"ImageLaterality": None, "PatientOrientation": None}, "", ("Laterality", "")),
        ({"PatientOrientation": ["P", "FL"]}, ["P", "FL"], ("ImageLaterality", "R")),
    ],
    ids=["series_laterality", "neither", "compound_orientation"],
)
def test_the_capture_takes_orientation_and_laterality_from_its_scan(
    attributes: dict[str, object], orientation: object, laterality: tuple[str, str]
) -> None:
    """MG's compound orientations are kept whole; laterality comes from the image, else the series, else empty."""
    scan = _scan(**attributes)
    capture = build_answer(scan, "scan-1", CLASSIFIED_ANALYSIS, IDENTITY).capture
    assert capture.PatientOrientation == orientation
    keyword, value = laterality
    assert capture[keyword].value == value
    assert ("ImageLaterality" in capture) == (keyword == "ImageLaterality")


def test_the_answer_copies_the_header_it_is_given() -> None:
    """The writer reads a scan's header once and hands it over: the answer copies that header."""
    scan = _scan()
    header = read_header(scan)
    header.AccessionNumber = "ACC-GIVEN"
    answer = build_answer(scan, "scan-1", CLASSIFIED_ANALYSIS, IDENTITY, answer_source(header))
    assert answer.report.AccessionNumber == "ACC-GIVEN" and answer.capture.AccessionNumber == "ACC-GIVEN"


def test_a_region_the_device_proposed_is_coded_apart_and_the_report_says_what_was_not_assessed() -> None:
    proposed = replace(REGIONS[0], marked_by="device", detector_score=0.8)
    analysis = replace(CLASSIFIED_ANALYSIS, regions=(proposed,))
    report = build_answer(_scan(), "scan-1", analysis, IDENTITY).report
    lines = _tree(report.ContentSequence)
    assert "    CONTAINS CODE Source of the region = ME-0006 99MAMMOEDGE Proposed by the device's detector" in lines
    assert lines[-1].endswith(
        "Regions proposed by the device's detector: a mass it did not propose was not assessed. "
        f"Model hybrid-test 1.2 (int8, sha256 {'ab' * 32})."
    )


def test_the_test_mammogram_is_an_original_image_first_in_its_series() -> None:
    dataset = pydicom.dcmread(io.BytesIO(_scan()))
    assert list(dataset.ImageType) == ["ORIGINAL", "PRIMARY", ""]  # what a modality sends, not a derived image
    assert (dataset.SeriesNumber, dataset.InstanceNumber) == (1, 1)


@pytest.mark.parametrize(
    ("spec", "allowed", "refused"),
    [("1", [1], [2]), ("2", [2], [1, 3]), ("1-3", [1, 3], [4]), ("1-n", [1, 7], []), ("2-2n", [2, 4], [1, 3])],
)
def test_the_multiplicity_rule_reads_the_dictionarys_forms(spec: str, allowed: list[int], refused: list[int]) -> None:
    from edge_app.dicom.headers import _multiplicity_allowed

    assert all(_multiplicity_allowed(spec, count) for count in allowed)
    assert not any(_multiplicity_allowed(spec, count) for count in refused)
