"""Regions from the DICOM objects a reader's viewer or a segmentation tool sends: measurement reports in both layouts
viewers write (each shape), Segmentations, and every refusal; the analyser answering them with ``marked_by`` sr/seg."""

from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicomfiles import encode, mammogram, measurement_report
from fakemodel import write_fake_bundle
from test_dicom_listen import _segmentation

from edge_app.dicomregions import seg_images, seg_regions, segmentation_masks, sr_images, sr_regions
from edge_app.errors import RegionError
from edge_app.model import EdgeModel
from edge_app.regions import Box, Region
from edge_app.scope import ScopeLimits
from edge_app.service.analyse import ModelAnalyser, Sidecar

SHAPES = [
    ("CIRCLE", [(200.5, 150.5), (230.5, 150.5)]),
    ("POINT", [(50.5, 60.5)]),
    ("ELLIPSE", [(100.5, 200.5), (140.5, 200.5), (120.5, 190.5), (120.5, 210.5)]),
    ("POLYLINE", [(300.5, 50.5), (350.5, 50.5), (350.5, 90.5), (300.5, 90.5), (300.5, 50.5)]),
]
EXPECTED = [
    Region("A", 200.0, 150.0, 30.0),
    Region("B", 50.0, 60.0, 8.0, shape="point"),
    Region("C", 120.0, 200.0, 20.0, Box(100, 190, 140, 210), "ellipse"),
    Region("D", 325.0, 70.0, 25.0, Box(300, 50, 350, 90), "polygon"),
]


def _source(rows: int = 300, columns: int = 400) -> pydicom.Dataset:
    pixels = np.random.default_rng(0).integers(0, 4096, (rows, columns)).astype(np.uint16)
    return pydicom.dcmread(io.BytesIO(encode(mammogram(pixels))))


@pytest.mark.parametrize("layout", ["group", "measurement"])
def test_both_report_layouts_give_every_shape_as_a_region(layout: str) -> None:
    """Image coordinates put the first pixel's centre at (0.5, 0.5), regions at (0, 0); a point gets the radius the
    analyser passes (the crop rule's smallest); an outline repeated under two measurements is one region."""
    source = _source()
    report = encode(measurement_report(source, SHAPES, layout, repeats=2))
    assert sr_images(report) == {source.SOPInstanceUID}
    assert sr_regions(report, source.SOPInstanceUID, 400, 300, 8.0) == EXPECTED


def test_highdicoms_own_reader_finds_only_the_group_layout() -> None:
    """Why the tree is walked: highdicom reads a group's Image Region, not a SCOORD under a measurement."""
    source = _source()
    found = {}
    for layout in ("group", "measurement"):
        report = hd.sr.Comprehensive3DSR.from_dataset(measurement_report(source, SHAPES[:1], layout))
        groups = report.content.get_planar_roi_measurement_groups()
        found[layout] = [group.reference_type for group in groups]
    assert found["group"] != [] and found["measurement"] == []


@pytest.mark.parametrize(
    ("shapes", "uid", "message"),
    [
        (SHAPES, "1.2.3.4", "marks no region on this image (it marks 1 other image(s))"),
        ([("POLYLINE", [(10.5, 10.5), (40.5, 40.5)])], None, "marks only open lines (rulers) on this image"),
        ([("CIRCLE", [(500.5, 10.5), (510.5, 10.5)])], None, "region 'A': centre (500, 10) lies outside"),
        ([("CIRCLE", [(10.5, 10.5), (10.5, 10.5)])], None, "the circle has no radius"),
        ([("POINT", [(10.5 + index, 10.5)]) for index in range(17)], None, "marks 17 regions; at most 16"),
    ],
)
def test_a_report_that_marks_nothing_here_is_refused_with_the_reason(
    shapes: list[tuple[str, list[tuple[float, float]]]], uid: str | None, message: str
) -> None:
    source = _source()
    report = encode(measurement_report(source, shapes, "group"))
    with pytest.raises(RegionError, match=re.escape(message)):
        sr_regions(report, uid or source.SOPInstanceUID, 400, 300, 8.0)


def test_what_is_not_a_report_is_refused() -> None:
    with pytest.raises(RegionError, match="cannot be read as DICOM"):
        sr_regions(b"not dicom", "1.2", 10, 10, 1.0)
    with pytest.raises(RegionError, match="not an Enhanced or Comprehensive SR"):
        sr_regions(encode(mammogram(np.zeros((8, 8), np.uint16))), "1.2", 10, 10, 1.0)


def test_a_segmentation_gives_one_region_per_component_of_its_images_mask(tmp_path: Path) -> None:
    source = _source(200, 160)
    mask = np.zeros((200, 160), bool)
    mask[40:90, 30:70] = True
    mask[120:150, 100:140] = True
    data = encode(_segmentation(source, mask))
    assert seg_images(data) == {source.SOPInstanceUID}
    regions = seg_regions(data, source.SOPInstanceUID, 160, 200)
    assert sorted((region.box.x0, region.box.y0) for region in regions if region.box) == [(30, 40), (100, 120)]
    with pytest.raises(RegionError, match="marks no region on this image"):
        seg_regions(data, "1.2.3", 160, 200)


def test_the_analyser_answers_a_reports_regions_marked_by_sr(tmp_path: Path, fake_runtime: None) -> None:
    bundle = write_fake_bundle(tmp_path / "bundle", patch_side_px=(48, 64))
    model = EdgeModel.load(bundle, "float32", "auto", 1)
    analyser = ModelAnalyser(model, 10**7, ScopeLimits.resolve(model.manifest.scope))
    source = _source()
    film = encode(source)
    report = Sidecar("film.sr.dcm", "sr", encode(measurement_report(source, SHAPES, "measurement")))
    analysis = analyser.analyse(film, "film.dcm", report)
    assert [(a.label, a.marked_as, a.marked_by, a.reader) for a in analysis.regions] == [
        ("A", "circle", "sr", None),
        ("B", "point", "sr", None),
        ("C", "ellipse", "sr", None),
        ("D", "polygon", "sr", None),
    ]
    rule = model.manifest.scope.crop_rule
    point = analysis.regions[1]
    assert point.crop.x1 - point.crop.x0 == rule.min_side  # a point is cut as the rule's smallest square
    roi = Sidecar("film.roi.json", "roi", b'{"regions": [{"x": 200, "y": 150, "radius": 30}]}')
    assert analysis.regions[0].probability == analyser.analyse(film, "film.dcm", roi).regions[0].probability
    for sidecar in (report, Sidecar("patch.seg.dcm", "seg", b"not read")):
        with pytest.raises(RegionError) as refused:
            analyser.analyse(encode_png(), "patch.png", sidecar)
        kind = sidecar.kind.upper()
        assert str(refused.value) == f"a DICOM {kind} marks DICOM images by their UID; this scan is not DICOM"


def encode_png() -> bytes:
    import cv2

    ok, png = cv2.imencode(".png", np.random.default_rng(1).integers(0, 255, (48, 48)).astype(np.uint8))
    assert ok
    return png.tobytes()


def test_a_report_dropped_beside_its_film_pairs_by_name_and_answers_marked_by_sr(
    tmp_path: Path, fake_runtime: None
) -> None:
    """`film.dcm` and `film.sr.dcm` dropped in the inbox: the tracker pairs them as scan and sidecar, and the daemon's
    pipeline answers the report's regions (kept beside the film in the archive)."""
    from edge_app.config import Config, IngestSection, ModelSection, PathsSection
    from edge_app.service.daemon import build_pipeline, journal_path
    from edge_app.service.intake import InboxTracker
    from edge_app.service.journal import Journal

    bundle = write_fake_bundle(tmp_path / "bundle", patch_side_px=(48, 64))
    paths = PathsSection(*(tmp_path / name for name in ("inbox", "results", "archive", "quarantine", "state", "o")))
    config = Config(model=ModelSection(bundle=bundle), paths=paths, ingest=IngestSection(settle_seconds=0.0))
    model = EdgeModel.load(bundle, "float32", "auto", 1)
    analyser = ModelAnalyser(model, 10**7, ScopeLimits.resolve(model.manifest.scope))
    journal = Journal(journal_path(config))
    pipeline = build_pipeline(config, journal, analyser)
    source = _source()
    (paths.inbox / "film.sr.dcm").write_bytes(encode(measurement_report(source, SHAPES[:1], "measurement")))
    (paths.inbox / "film.dcm").write_bytes(encode(source))
    tracker = InboxTracker(paths.inbox, 0.0, False, 10)
    tracker.rescan()
    tracker.ready()  # the first look records sizes; the second finds them still
    (arrival,) = tracker.ready()
    assert (arrival.scan.name, arrival.sidecar.name if arrival.sidecar else None) == ("film.dcm", "film.sr.dcm")
    record = pipeline.take(arrival.scan, arrival.sidecar)
    journal.close()
    result = json.loads((paths.results / str(record.result_file)).read_text())
    assert [(r["label"], r["marked_as"], r["marked_by"]) for r in result["regions"]] == [("A", "circle", "sr")]
    assert (paths.archive / "film.sr.dcm").is_file() and (paths.archive / "film.dcm").is_file()


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        (  # the major axis vertical: the box is tall
            ("ELLIPSE", [(120.5, 180.5), (120.5, 220.5), (110.5, 200.5), (130.5, 200.5)]),
            Region("A", 120.0, 200.0, 20.0, Box(110, 180, 130, 220), "ellipse"),
        ),
        (  # at 45 degrees: each half side is hypot(a cos t, b sin t) = hypot(20, 10)
            ("ELLIPSE", [(100.5, 100.5), (140.5, 140.5), (130.5, 110.5), (110.5, 130.5)]),
            Region("A", 120.0, 120.0, float(np.hypot(40, 40) / 2), Box(97, 97, 143, 143), "ellipse"),
        ),
        (  # the fewest points an outline has: three corners and the first again
            ("POLYLINE", [(300.5, 50.5), (350.5, 50.5), (325.5, 90.5), (300.5, 50.5)]),
            Region("A", 325.0, 70.0, 25.0, Box(300, 50, 350, 90), "polygon"),
        ),
    ],
)
def test_rotated_ellipses_and_the_smallest_outline_give_their_exact_bounds(
    shape: tuple[str, list[tuple[float, float]]], expected: Region
) -> None:
    source = _source()
    report = encode(measurement_report(source, [shape], "group"))
    (region,) = sr_regions(report, source.SOPInstanceUID, 400, 300, 8.0)
    assert (region.label, region.cx, region.cy, region.box, region.shape) == (
        expected.label,
        pytest.approx(expected.cx),
        pytest.approx(expected.cy),
        expected.box,
        expected.shape,
    )
    assert region.radius == pytest.approx(expected.radius)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (("ELLIPSE", [(100.5, 200.5), (140.5, 200.5), (120.5, 200.5), (120.5, 200.5)]), "an axis of the ellipse"),
        (("POLYLINE", [(10.5, 10.5), (40.5, 10.5), (20.5, 10.5), (10.5, 10.5)]), "the outline encloses no area"),
    ],
)
def test_a_shape_without_area_is_refused_by_name(shape: tuple[str, list[tuple[float, float]]], message: str) -> None:
    source = _source()
    report = encode(measurement_report(source, [shape], "group"))
    with pytest.raises(RegionError, match=rf"region 'A' \({shape[0]}\): {message}"):
        sr_regions(report, source.SOPInstanceUID, 400, 300, 8.0)


def _report_items(report: pydicom.Dataset, value_type: str) -> list[pydicom.Dataset]:
    found, stack = [], list(report.ContentSequence)
    while stack:
        item = stack.pop()
        found += [item] if item.ValueType == value_type else []
        stack += list(item.get("ContentSequence") or [])
    return found


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        (("CIRCLE", [(10.5, 10.5), (11.5, 10.5)]), Region("A", 10.0, 10.0, 1.0)),
        (("CIRCLE", [(10.5, 20.5), (10.5, 23.5)]), Region("A", 10.0, 20.0, 3.0)),  # its edge point straight below
        (
            ("ELLIPSE", [(100.5, 200.5), (140.5, 200.5), (120.5, 199.5), (120.5, 201.5)]),
            Region("A", 120.0, 200.0, 20.0, Box(100, 199, 140, 201), "ellipse"),
        ),
    ],
    ids=["circle_of_one_pixel", "circle_measured_downwards", "ellipse_one_pixel_thick"],
)
def test_circles_measured_either_way_and_the_smallest_ellipse_are_regions(
    shape: tuple[str, list[tuple[float, float]]], expected: Region
) -> None:
    source = _source()
    report = encode(measurement_report(source, [shape], "group"))
    assert sr_regions(report, source.SOPInstanceUID, 400, 300, 8.0) == [expected]


def _refusal(report: pydicom.Dataset | bytes, uid: str) -> str:
    data = report if isinstance(report, bytes) else encode(report)
    with pytest.raises(RegionError) as refused:
        sr_regions(data, uid, 400, 300, 8.0)
    return str(refused.value)


def test_each_refusal_of_a_report_says_exactly_what_is_wrong() -> None:
    source = _source()
    uid = source.SOPInstanceUID
    multipoint = measurement_report(source, [("POINT", [(10.5, 10.5)])], "group")  # highdicom builds no MULTIPOINT
    (scoord,) = _report_items(multipoint, "SCOORD")
    scoord.GraphicType, scoord.GraphicData = "MULTIPOINT", [10.5, 10.5, 20.5, 20.5, 10.5, 10.5]
    assert _refusal(multipoint, uid) == "region 'A' (MULTIPOINT): 3 point(s) do not make a MULTIPOINT this device reads"
    dot = measurement_report(source, [("POLYLINE", [(10.5, 10.5), (10.5, 10.5)])], "group")
    assert _refusal(dot, uid) == "the measurement report marks only open lines (rulers) on this image, no region"
    nothing = measurement_report(source, [], "group")
    assert (
        _refusal(nothing, uid) == "the measurement report marks no region on this image (it has no image coordinates)"
    )
    untyped = measurement_report(source, [("POINT", [(10.5, 10.5)])], "group")
    del _report_items(untyped, "SCOORD")[0].GraphicType
    assert _refusal(untyped, uid) == "region 'A' (): 1 point(s) do not make a  this device reads"
    odd = measurement_report(source, [("POLYLINE", [(10.5, 10.5), (20.5, 10.5), (20.5, 20.5)])], "group")
    _report_items(odd, "SCOORD")[0].GraphicData = [10.5, 10.5, 20.5, 10.5, 20.5]
    assert _refusal(odd, uid) == "a POLYLINE has an odd number of coordinates (5)"
    assert _refusal(encode(source), uid) == (
        "the .sr.dcm sidecar is not an Enhanced or Comprehensive SR measurement report"
    )
    assert _refusal(b"not dicom", uid).startswith("the measurement report cannot be read as DICOM: ")


def test_what_cannot_be_read_is_named_by_what_it_should_be() -> None:
    for read, what in ((sr_images, "measurement report"), (seg_images, "segmentation")):
        with pytest.raises(RegionError, match=f"^the {what} cannot be read as DICOM: "):
            read(b"not dicom")
    with pytest.raises(RegionError, match=r"^the segmentation cannot be read as DICOM: "):
        seg_regions(b"not dicom", "1.2", 10, 10)


def _two_segments(source: pydicom.Dataset) -> pydicom.Dataset:
    """A Segmentation of `source` with two segments, one frame each: rows 5-9 and rows 20-29."""
    labels = np.zeros((60, 40), np.uint8)
    labels[5:10, 5:10] = 1
    labels[20:30, 10:20] = 2
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=f"mass {number}",
            segmented_property_category=hd.sr.CodedConcept("49755003", "SCT", "Morphologically abnormal structure"),
            segmented_property_type=hd.sr.CodedConcept("4147007", "SCT", "Mass"),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for number in (1, 2)
    ]
    return hd.seg.Segmentation(
        source_images=[source],
        pixel_array=labels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=pydicom.uid.generate_uid(),
        series_number=7,
        sop_instance_uid=pydicom.uid.generate_uid(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
    )


def _masks(segmentation: pydicom.Dataset) -> dict[str, tuple[tuple[int, ...], int]]:
    """Each image's mask as its extent (first row, last row, first column, last column) and its pixel count."""
    masks = segmentation_masks(pydicom.dcmread(io.BytesIO(encode(segmentation))))
    extents: dict[str, tuple[tuple[int, ...], int]] = {}
    for uid, mask in masks.items():
        rows, columns = np.nonzero(mask)
        extents[uid] = ((int(rows.min()), int(rows.max()), int(columns.min()), int(columns.max())), int(mask.sum()))
    return extents


def test_a_segmentations_frames_are_joined_per_image_they_derive_from() -> None:
    """Every segment's frame adds to the mask of the image its functional group names; a frame that names none
    takes the one image the Segmentation references; with several referenced, it cannot be placed and is refused."""
    source = _source(60, 40)
    both = ((5, 29, 5, 19), 25 + 100)
    segmentation = _two_segments(source)
    assert _masks(segmentation) == {source.SOPInstanceUID: both}
    other = "1.2.826.0.1.3680043.8.498.1"
    frames = segmentation.PerFrameFunctionalGroupsSequence
    frames[1] = copy.deepcopy(frames[1])  # highdicom shares one derivation item between the frames
    frames[1].DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID = other
    assert _masks(segmentation) == {source.SOPInstanceUID: ((5, 9, 5, 9), 25), other: ((20, 29, 10, 19), 100)}
    unnamed = _two_segments(source)
    del unnamed.PerFrameFunctionalGroupsSequence[1]  # the second frame has no functional group of its own
    assert _masks(unnamed) == {source.SOPInstanceUID: both}
    for frame in unnamed.PerFrameFunctionalGroupsSequence:
        del frame.DerivationImageSequence
    assert _masks(unnamed) == {source.SOPInstanceUID: both}
    del unnamed.PerFrameFunctionalGroupsSequence
    assert _masks(unnamed) == {source.SOPInstanceUID: both}
    second = pydicom.Dataset()
    second.ReferencedSOPClassUID = source.SOPClassUID
    second.ReferencedSOPInstanceUID = other
    unnamed.ReferencedSeriesSequence[0].ReferencedInstanceSequence.append(second)
    with pytest.raises(RegionError) as refused:
        seg_regions(encode(unnamed), source.SOPInstanceUID, 40, 60)
    assert str(refused.value) == "the segmentation cannot be read: frame 1 does not say which image it segments"


def test_a_segmentation_of_another_size_than_its_image_is_refused() -> None:
    source = _source(60, 40)
    with pytest.raises(RegionError) as refused:
        seg_regions(encode(_two_segments(source)), source.SOPInstanceUID, 80, 60)
    assert str(refused.value) == "the segmentation's mask is 40x60, the scan 80x60: a mask must be the scan's size"
