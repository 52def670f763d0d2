"""Regions from the DICOM objects a reader's viewer or a segmentation tool sends: measurement reports in both layouts
viewers write (each shape), Segmentations, and every refusal; the analyser answering them with ``marked_by`` sr/seg."""

from __future__ import annotations

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

from edge_app.dicomregions import seg_images, seg_regions, sr_images, sr_regions
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
    with pytest.raises(RegionError, match="this scan is not DICOM"):
        analyser.analyse(encode_png(), "patch.png", report)


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
