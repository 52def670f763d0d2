"""Regions of interest without a model (milliseconds): sidecars parsed or refused with the rule broken, the one crop
rule (byte-identical to `mammo-data import-mias` on the real MIAS films), the scope guard, the training scope a run
records, and the result schema a region answer is written in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fakes import FAKE_IDENTITY, FakeAnalyser
from hypothesis import given
from hypothesis import strategies as st

from edge_app.decode import DecodedImage, decode_file
from edge_app.errors import ConfigError, DataError, InputImageError, RegionError
from edge_app.preprocess import PreprocessConfig, to_model_input
from edge_app.regions import (
    MAX_ROI_BYTES,
    Box,
    CropRule,
    Region,
    crop_region,
    mask_regions,
    parse_sidecar,
    sidecar_kind,
    sidecar_names,
)
from edge_app.scope import Measured, ScopeLimits, TrainingScope, needs_roi_reason
from edge_app.service.analyse import Sidecar
from edge_app.service.lifecycle import ScanState, advance, received
from edge_app.service.writer import result_document, result_schema


def _roi(document: Any, width: int = 1024, height: int = 1024) -> list[Region]:
    return parse_sidecar("roi", json.dumps(document).encode(), width, height)


def test_circles_boxes_and_default_labels() -> None:
    regions = _roi({"regions": [{"label": "A", "x": 535, "y": 425, "radius": 197}, {"box": [100, 200, 260, 380]}]})
    assert regions[0] == Region("A", 535.0, 425.0, 197.0)
    assert regions[1] == Region("B", 180.0, 290.0, 90.0, Box(100, 200, 260, 380))
    assert regions[1].bounds(1024, 1024) == Box(100, 200, 260, 380)
    assert regions[0].bounds(600, 600) == Box(338, 228, 600, 600)  # a circle's box, clipped to the image


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "must be a table of keys"),
        (b'{"regions": []}', 'non-empty list "regions"'),
        (b'{"regions": [{"x": 1, "y": 1, "radius": 2}], "colour": 1}', "unknown key(s) 'colour'"),
        (b'{"regions": [{"x": 1, "y": 1, "radius": 2, "r": 3}]}', "region 1: unknown key(s) 'r'"),
        (b'{"regions": [{"x": 1, "y": 1}]}', "region 1: missing key(s) 'radius'"),
        (b'{"regions": [{"label": "M", "x": 5000, "y": 1, "radius": 2}]}', "region 'M': centre (5000, 1) lies outside"),
        (b'{"regions": [{"x": 1, "y": 1, "radius": 0}]}', "radius must be > 0"),
        (b'{"regions": [{"x": "1", "y": 1, "radius": 2}]}', "x must be a finite number"),
        (b'{"regions": [{"box": [10, 10, 5, 20]}]}', "is empty or reversed"),
        (b'{"regions": [{"box": [10, 10, 2000, 20]}]}', "lies outside the 1024x1024 image"),
        (b'{"regions": [{"box": [1, 2, 3]}]}', "box must be [x0, y0, x1, y1]"),
        (b'{"regions": [{"label": "A", "box": [1, 2, 3, 4]}, {"label": "A", "box": [1, 2, 3, 4]}]}', "repeated: A"),
        (json.dumps({"regions": [{"box": [1, 2, 3, 4]}] * 17}).encode(), "at most 16 per scan"),
    ],
)
def test_a_bad_roi_sidecar_is_refused_with_the_rule_it_broke(data: bytes, message: str) -> None:
    with pytest.raises(RegionError) as caught:
        parse_sidecar("roi", data, 1024, 1024)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("region", "accepted"),
    [
        ({"box": [0, 0, 40, 30]}, True),  # the whole image
        ({"box": [-1, 0, 40, 30]}, False),
        ({"box": [0, -1, 40, 30]}, False),
        ({"box": [0, 0, 41, 30]}, False),
        ({"box": [0, 0, 40, 31]}, False),
        ({"box": [5, 5, 5, 9]}, False),  # no width
        ({"box": [5, 5, 9, 5]}, False),  # no height
        ({"x": 0, "y": 0, "radius": 0.5}, True),
        ({"x": 39.5, "y": 29.5, "radius": 1}, True),
        ({"x": 40, "y": 5, "radius": 1}, False),
        ({"x": 5, "y": 30, "radius": 1}, False),
        ({"x": -0.1, "y": 5, "radius": 1}, False),
        ({"x": 5, "y": -0.1, "radius": 1}, False),
    ],
)
def test_regions_at_the_edges_of_the_image(region: dict[str, Any], accepted: bool) -> None:
    data = json.dumps({"regions": [region]}).encode()
    if accepted:
        assert len(parse_sidecar("roi", data, 40, 30)) == 1
    else:
        with pytest.raises(RegionError):
            parse_sidecar("roi", data, 40, 30)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"regions": [{"box": [1, 2, 3, 4]}, 7]}, "region 2 must be an object with x, y, radius or with box"),
        ({"regions": [{"box": [1, "2", 3, 4]}]}, "region 'A' box must be a finite number, got '2'"),
        ({"regions": [{"x": 1, "y": None, "radius": 2}]}, "region 'A' y must be a finite number, got None"),
        ({"regions": [{"x": 1, "y": 1, "radius": float("inf")}]}, "region 'A' radius must be a finite number"),
        (
            {"regions": [{"x": 1, "y": 1, "radius": 1, "label": label} for label in "ABAB"]},
            "region labels must be unique; repeated: A, B",
        ),
        ({"regions": "A"}, 'the .roi.json sidecar must hold a non-empty list "regions"'),
        ({"regions": [{"x": 1, "y": 1, "radius": 1, "label": "A"}, {"box": [1, 2, 3, 4], "label": "A"}]}, ": A"),
    ],
)
def test_each_roi_problem_is_worded_for_the_person_who_drew_it(document: Any, message: str) -> None:
    with pytest.raises(RegionError) as caught:
        _roi(document)
    assert message in str(caught.value)


def test_sixteen_regions_are_allowed_and_labels_run_past_z() -> None:
    from edge_app.regions import default_label

    assert len(_roi({"regions": [{"box": [1, 2, 3, 4], "label": str(i)} for i in range(16)]})) == 16
    assert [default_label(i) for i in (0, 25, 26, 27)] == ["A", "Z", "R27", "R28"]
    with pytest.raises(RegionError, match=r"^\.roi\.json: unknown key\(s\) 'colour'"):
        _roi({"regions": [{"box": [1, 2, 3, 4]}], "colour": 1})
    with pytest.raises(RegionError, match="not valid JSON"):
        parse_sidecar("roi", '{"regions": [{"x": "é"'.encode("latin-1"), 10, 10)


def test_a_mask_is_read_with_8_connectivity_and_must_fit_the_scan() -> None:
    mask = np.zeros((30, 40), np.uint8)
    mask[5, 5] = mask[6, 6] = 255  # diagonal neighbours: one region
    mask[20:25, 30:36] = 1
    regions = parse_sidecar("mask", _png(mask), 40, 30)
    assert [region.box for region in regions] == [Box(5, 5, 7, 7), Box(30, 20, 36, 25)]
    with pytest.raises(RegionError, match=r"is 40x30, the scan 30x40: a mask must be the scan's size$"):
        parse_sidecar("mask", _png(mask), 30, 40)


def test_bounds_and_crops_near_the_edges() -> None:
    assert Region("A", 2, 3, 5).bounds(100, 100) == Box(0, 0, 7, 8)
    assert Region("A", 97, 98, 5).bounds(100, 100) == Box(92, 93, 100, 100)
    assert Region.from_box("B", Box(-4, -2, 10, 12)).bounds(8, 9) == Box(0, 0, 8, 9)
    gray = np.full((10, 10), 9, np.uint8)
    crop, window = crop_region(gray, Region("A", 30, 30, 2), CropRule(2.0, 4))  # entirely outside: black
    assert window == Box(28, 28, 32, 32) and crop.dtype == np.uint8 and crop.shape == (4, 4) and not crop.any()


def _png(pixels: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", pixels)
    assert ok
    return encoded.tobytes()


def test_each_connected_component_of_a_mask_is_one_region() -> None:
    mask = np.zeros((300, 400), np.uint8)
    mask[10:30, 20:60] = 255
    mask[200:260, 300:330] = 1
    regions = parse_sidecar("mask", _png(mask), 400, 300)
    assert [(r.label, r.box) for r in regions] == [("A", Box(20, 10, 60, 30)), ("B", Box(300, 200, 330, 260))]
    assert regions[0].radius == 20.0 and (regions[0].cx, regions[0].cy) == (40.0, 20.0)


@pytest.mark.parametrize(
    ("mask", "size", "message"),
    [
        (np.zeros((30, 40), np.uint8), (40, 30), "marks no region"),
        (np.eye(30, 40, dtype=np.uint8), (41, 30), "a mask must be the scan's size"),
    ],
)
def test_a_bad_mask_is_refused(mask: np.ndarray, size: tuple[int, int], message: str) -> None:
    with pytest.raises(RegionError) as caught:
        parse_sidecar("mask", _png(mask), *size)
    assert message in str(caught.value)


def test_sidecar_names_belong_to_their_scan() -> None:
    assert sidecar_names("nested/film 1.dcm") == (
        "nested/film 1.roi.json",
        "nested/film 1.mask.png",
        "nested/film 1.seg.dcm",
        "nested/film 1.sr.dcm",
    )
    assert sidecar_names("noext")[:2] == ("noext.roi.json", "noext.mask.png")
    names = ("a.ROI.json", "a.mask.png", "a.SEG.dcm", "a.sr.dcm", "a.png", "a.json", "a.dcm")
    assert [sidecar_kind(n) for n in names] == ["roi", "mask", "seg", "sr", None, None, None]


def test_the_crop_rule_centres_the_region_and_pads_beyond_the_edge_with_black() -> None:
    image = np.full((100, 100), 200, np.uint8)
    crop, window = crop_region(image, Region("A", 5, 50, 20), CropRule(2.0, 64))
    assert window == Box(-27, 18, 37, 82) and crop.shape == (64, 64)
    assert (crop[:, :27] == 0).all() and (crop[:, 27:] == 200).all()
    crop, window = crop_region(image, Region("A", 50, 50, 40), CropRule(2.0, 64))
    assert window == Box(10, 10, 90, 90) and (crop == 200).all()  # side 2 x 40 beats the minimum


@given(
    cx=st.floats(-50, 150),
    cy=st.floats(-50, 150),
    radius=st.floats(0.5, 120),
    scale=st.floats(0.5, 6),
    min_side=st.integers(1, 128),
)
def test_a_crop_always_has_the_rules_side_and_matches_the_image_where_they_overlap(
    cx: float, cy: float, radius: float, scale: float, min_side: int
) -> None:
    image = np.arange(100 * 120, dtype=np.uint32).reshape(100, 120).astype(np.uint8) | 1  # never 0 inside
    rule = CropRule(scale, min_side)
    crop, window = crop_region(image, Region("A", cx, cy, radius), rule)
    side = max(min_side, round(scale * radius))
    assert crop.shape == (side, side) and window.x1 - window.x0 == side
    inside = np.zeros_like(crop, bool)
    for row in range(side):
        y = window.y0 + row
        for col in range(side):
            x = window.x0 + col
            if 0 <= x < 120 and 0 <= y < 100:
                inside[row, col] = True
                assert crop[row, col] == image[y, x]
    assert (crop[~inside] == 0).all()


def test_the_device_crop_of_every_mias_mass_is_byte_identical_to_the_imported_crop(
    mias_dir: Path, tmp_path: Path
) -> None:
    """One crop rule: the model input the device makes from a film and its region is the input the imported crop
    makes, for every located mass of the real films (default rule and a synthetic-data rule alike)."""
    from mammo_train.films import mias_sidecars
    from mammo_train.mias import import_mias

    for rule in (CropRule(), CropRule(4.69, 48)):
        out = tmp_path / f"import-{rule.scale}"
        import_mias(mias_dir, out, min_size=rule.min_side, crop_scale=rule.scale)
        per_film = mias_sidecars(mias_dir, tmp_path / "roi")
        config = PreprocessConfig(input_size=96)
        compared = 0
        for ref, masses in per_film.items():
            film = decode_file(mias_dir / f"{ref}.pgm").pixels
            regions = parse_sidecar("roi", (tmp_path / "roi" / f"{ref}.roi.json").read_bytes(), 1024, 1024)
            assert len(regions) == len(masses)
            for index, region in enumerate(regions):
                name = ref if len(masses) == 1 else f"{ref}_{index + 1}"
                label = "Malignant" if masses[index].label else "Benign"
                imported = decode_file(out / "MIAS Dataset" / f"{label} Masses" / f"{name}.png").pixels
                device, _ = crop_region(film, region, rule)
                assert np.array_equal(device, imported), name
                assert np.array_equal(to_model_input(device, config), to_model_input(imported, config))
                compared += 1
        assert compared == 58  # every located mass (mdb059 has no centre)


def test_the_scope_guard_refuses_films_and_classifies_patches() -> None:
    scope = TrainingScope(patch_side_px=(64, 348), patch_side_mm=(12.8, 69.6))
    limits = ScopeLimits.resolve(scope)
    assert limits == ScopeLimits(min_side_px=32, max_side_px=696, max_extent_mm=139.2)
    assert ScopeLimits.resolve(scope, max_side_px=2000).max_side_px == 2000  # configured beats derived

    def measured(width: int, height: int, spacing: float | None = None) -> Measured:
        pixels = np.zeros((height, width), np.uint8)
        return Measured.of(DecodedImage(pixels, "X", None if spacing is None else (spacing, spacing)))

    film = needs_roi_reason(measured(1024, 1024), limits, "mdb001.pgm")
    assert film is not None and "1024x1024 px, larger than" in film and "drop mdb001.roi.json" in film
    physical = needs_roi_reason(measured(600, 500, 0.5), limits, "x.dcm")  # few pixels, but 30 x 25 cm of breast
    assert physical is not None and "(300 x 250 mm), physically larger than" in physical
    assert "smaller than" in str(needs_roi_reason(measured(20, 20), limits))
    assert needs_roi_reason(measured(227, 227), limits) is None
    assert needs_roi_reason(measured(227, 227, 0.1), limits) is None


def test_a_run_records_the_crop_rule_and_patch_sizes_of_its_training_data(mias_dir: Path, tmp_path: Path) -> None:
    from mammo_train.layout import scan_dataset, training_scope
    from mammo_train.mias import import_mias
    from mammo_train.synth import SynthSpec, generate

    import_mias(mias_dir, tmp_path / "mias")
    scope = training_scope(record.path for record in scan_dataset(tmp_path / "mias"))
    assert (scope.crop_scale, scope.crop_min_side) == (2.0, 64)
    assert scope.patch_side_px == (64, 394) and scope.patch_side_mm == (12.8, 78.8)  # mdb001: radius 197, 0.2 mm
    generate(tmp_path / "synth", SynthSpec(per_class=10, size=96, seed=1))
    synthetic = training_scope(record.path for record in scan_dataset(tmp_path / "synth"))
    assert synthetic.patch_side_px == (96, 96) and synthetic.patch_side_mm is None
    assert 3.0 < synthetic.crop_scale < 6.5 and synthetic.crop_min_side == 48
    both = [record.path for record in scan_dataset(tmp_path / "mias") + scan_dataset(tmp_path / "synth")]
    with pytest.raises(DataError, match="cut by different crop rules"):
        training_scope(both)


def test_region_answers_and_needs_roi_are_valid_results() -> None:
    from jsonschema import ValidationError, validate

    analyser = FakeAnalyser()
    schema = result_schema()
    cases = (
        (b"patch", None, "classified", ["A"]),
        (b"FULL film", None, "needs_roi", []),
        (b"FULL film", Sidecar("f.roi.json", "roi", b"A B"), "classified", ["A", "B"]),
    )
    for data, sidecar, status, labels in cases:
        analysis = analyser.analyse(data, "f.dcm", sidecar)
        record = advance(received("f.dcm"), ScanState.CLAIMED)
        record = advance(record, ScanState.ANALYSED, result_stem="f", status=analysis.status)
        document = result_document(record, analysis, FAKE_IDENTITY)
        validate(document, schema)
        assert document["status"] == status and [region["label"] for region in document["regions"]] == labels
    classified = result_document(record, analysis, FAKE_IDENTITY)
    with pytest.raises(ValidationError):
        validate({**classified, "regions": []}, schema)  # classified with no region is not a result
    with pytest.raises(ValidationError):
        validate({**classified, "status": "needs_roi"}, schema)  # needs_roi with answers is not either


def test_a_crop_rule_that_cannot_cut_is_refused_with_its_values() -> None:
    with pytest.raises(InputImageError) as refused:
        CropRule(0.0, 64)
    assert str(refused.value) == "a crop rule needs scale > 0 and min_side >= 1, got 0.0, 64"


def test_a_plain_patch_is_one_region_circling_the_whole_image() -> None:
    from edge_app.regions import whole_image

    assert whole_image(np.zeros((30, 40), np.uint8)) == (Region("A", 20.0, 15.0, 20.0), Box(0, 0, 40, 30))


def test_the_overlay_keeps_the_scans_geometry_and_colours_only_inside_the_regions() -> None:
    from edge_app.overlay import CAPTION, ZOOM_SIDE, RegionView, render

    scan = np.tile(np.linspace(40, 200, 300).astype(np.uint8), (600, 1))  # 300 wide, 600 tall
    hot = np.ones((96, 96), np.float32)
    regions = [
        RegionView("A", "A  p=0.900  malignant", Box(20, 30, 80, 90), (50.0, 60.0, 30.0), Box(0, 0, 100, 100),
                   scan[0:100, 0:100], hot),
        RegionView("B", "B  p=0.100  benign", Box(150, 400, 250, 500), None, Box(120, 370, 280, 530),
                   scan[370:530, 120:280], hot),
    ]  # fmt: skip
    picture = render(scan, regions)
    view = picture[:600, :300]
    assert picture.shape[0] == 600 + CAPTION and picture.shape[1] > 300 + ZOOM_SIDE  # aspect kept, zooms beside
    coloured = (view[:, :, 0] != view[:, :, 1]) | (view[:, :, 1] != view[:, :, 2])
    assert coloured[60, 50] and coloured[450, 200]  # heat inside each region
    assert not coloured[300, 150] and not coloured[200, 20] and not coloured[590, 290]  # plain grey elsewhere
    assert (view[300, 150] == scan[300, 150]).all()


def test_an_enlarged_scans_heat_is_blended_at_its_own_size_and_still_only_inside_its_region() -> None:
    from edge_app.overlay import MIN_VIEW_SIDE, RegionView, render

    scan = np.tile(np.linspace(40, 200, 100).astype(np.uint8), (80, 1))  # 100 x 80: enlarged 5.12 times
    hot = np.ones((96, 96), np.float32)
    circle = RegionView("A", "A", Box(30, 20, 70, 60), (50.0, 40.0, 20.0), Box(10, 0, 90, 80), scan[0:80, 10:90], hot)
    view = render(scan, [circle])[: round(80 * 5.12), :MIN_VIEW_SIDE]
    coloured = (view[:, :, 0] != view[:, :, 1]) | (view[:, :, 1] != view[:, :, 2])
    rows, columns = np.mgrid[0 : view.shape[0], 0 : view.shape[1]]
    distance = np.hypot(columns - 50 * 5.12, rows - 40 * 5.12)
    assert coloured[distance < 20 * 5.12 - 3].all()  # the whole circle heated
    caption = (columns > 70 * 5.12) & (abs(rows - 40 * 5.12) < 20)  # written beside the circle
    assert not coloured[(distance > 20 * 5.12 + 3) & ~caption].any()  # nothing beyond its outline


def test_the_overlay_heats_a_region_up_to_the_scans_edge_and_skips_heat_too_small_to_see() -> None:
    from edge_app.overlay import CAPTION, RegionView, render

    scan = np.full((600, 300), 120, np.uint8)  # shown at scale 1
    hot = np.ones((96, 96), np.float32)
    corner = RegionView("A", "A", Box(0, 0, 25, 25), (10.0, 10.0, 15.0), Box(-20, -20, 40, 40), scan[:40, :40], hot)
    view = render(scan, [corner])[:600, :300]
    coloured = (view[:, :, 0] != view[:, :, 1]) | (view[:, :, 1] != view[:, :, 2])
    assert coloured[0, 10] and coloured[10, 0]  # the window reaches past the scan: heat up to its first row and column
    film = np.full((4000, 100), 120, np.uint8)  # shown at scale 0.256
    for window in (Box(50, 100, 51, 140), Box(50, 100, 90, 101)):  # under one view pixel wide, or high: no heat
        sliver = RegionView("A", "A", window, None, window, film[:1, :1], hot)
        assert render(film, [sliver]).shape[0] == 1024 + CAPTION


@pytest.mark.parametrize("size", [(1046, 1112), (1047, 1113), (600, 792), (200, 120)])
def test_a_thumbnail_is_one_area_resize_of_the_overlay_within_a_grey_level_or_two(size: tuple[int, int]) -> None:
    """The results page's thumbnail (`thumbnail_jpeg`: halvings, odd sides cut, then one area resize) shows what one
    area resize of the whole overlay shows, at the page's width and the overlay's aspect."""
    from edge_app.overlay import THUMB_JPEG, THUMB_WIDTH, thumbnail_jpeg

    height, width = size
    rng = np.random.default_rng(width)
    picture = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 16)
    picture = cv2.normalize(picture, None, 0, 255, cv2.NORM_MINMAX)  # smooth blobs, stretched to full contrast
    shown = cv2.imdecode(np.frombuffer(thumbnail_jpeg(picture), np.uint8), cv2.IMREAD_COLOR)
    thumb_size = (THUMB_WIDTH, round(height * THUMB_WIDTH / width))
    resized = cv2.resize(picture, thumb_size, interpolation=cv2.INTER_AREA)
    expected = cv2.imdecode(cv2.imencode(".jpg", resized, THUMB_JPEG)[1], cv2.IMREAD_COLOR)  # JPEG's loss alike
    assert shown.shape == expected.shape
    difference = np.abs(shown.astype(np.int16) - expected.astype(np.int16))
    # JPEG's loss on both sides, and a fifth of a thumbnail pixel's stretch where an odd side was cut: a grey level or
    # two on these full-contrast pictures (a film-sized one's thumbnail one pixel off differs by about 5)
    assert float(difference.mean()) < 3.0 and float(expected.std()) > 10  # a picture with detail, not a flat one


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["a.png", "b.png", "--roi", "a.roi.json"], "--roi names the regions of one scan; 2 scans were given"),
        (["a.png", "--roi", "missing.roi.json"], "--roi missing.roi.json: no such file"),
    ],
)
def test_once_refuses_a_roi_it_cannot_use_before_loading_a_model(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: Any
) -> None:
    from edge_app.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["once", "--model", str(tmp_path / "no-bundle"), *arguments]) == 2
    assert message in capsys.readouterr().err


def test_scope_limits_in_the_config_are_checked() -> None:
    from edge_app.config import resolve_config

    with pytest.raises(ConfigError, match=r"\[scope\] min_side_px 500 exceeds max_side_px 100"):
        resolve_config(None, {"scope": {"min_side_px": 500, "max_side_px": 100}}, environ={})
    with pytest.raises(ConfigError, match=r"\[scope\] limits must be >= 0"):
        resolve_config(None, {"scope": {"max_extent_mm": -1}}, environ={})
    with pytest.raises(ConfigError, match=r"\[ingest\] sidecar_wait must be >= 0"):
        resolve_config(None, {"ingest": {"sidecar_wait": -1}}, environ={})
    assert resolve_config(None, {"scope": {"max_side_px": 2000}}, environ={}).scope.max_side_px == 2000


def test_scope_documents_and_descriptions() -> None:
    scope = TrainingScope(crop_scale=4.5, crop_min_side=48, patch_side_px=(96, 120), patch_side_mm=(19.2, 24.0))
    assert scope.to_dict() == {
        "crop_scale": 4.5,
        "crop_min_side": 48,
        "patch_side_px": (96, 120),
        "patch_side_mm": (19.2, 24.0),
    }
    assert TrainingScope.from_dict(scope.to_dict()) == scope
    limits = ScopeLimits.resolve(scope)
    assert limits == ScopeLimits(min_side_px=48, max_side_px=240, max_extent_mm=48.0)
    assert limits.describe() == "48..240 px a side, at most 48 mm"
    assert ScopeLimits.resolve(scope, 10, 20, 5.5).describe() == "10..20 px a side, at most 5.5 mm"
    assert Measured(30, 20, (6.0, 4.0)).to_dict() == {"width_px": 30, "height_px": 20, "extent_mm": (6.0, 4.0)}


def test_extent_uses_row_and_column_spacing_to_a_tenth_of_a_millimetre() -> None:
    pixels = np.zeros((7, 10), np.uint8)
    measured = Measured.of(DecodedImage(pixels, "DICOM", (0.083, 0.071)))  # rows 0.083 mm apart, columns 0.071
    assert measured == Measured(10, 7, (0.7, 0.6))  # 0.71 mm wide, 0.581 mm high, to a tenth
    assert Measured.of(DecodedImage(pixels, "PNG")).extent_mm is None


def test_the_scope_guard_includes_its_limits() -> None:
    limits = ScopeLimits(min_side_px=20, max_side_px=100, max_extent_mm=30.0)
    assert needs_roi_reason(Measured(20, 100, (30.0, 30.0)), limits) is None  # each limit itself is in scope
    assert "smaller than" in (needs_roi_reason(Measured(19, 100, None), limits) or "")
    assert "larger than" in (needs_roi_reason(Measured(20, 101, None), limits) or "")
    assert "physically larger" in (needs_roi_reason(Measured(50, 50, (30.1, 10.0)), limits) or "")
    assert ScopeLimits.resolve(TrainingScope(patch_side_px=(1, 10))).min_side_px == 1  # never below one pixel
    assert ScopeLimits.resolve(TrainingScope(patch_side_px=(3, 10))).min_side_px == 1  # half of 3, rounded down
    with pytest.raises(Exception, match=r"patch_side_mm must be 0 < min <= max, got \[0.0, 5.0\]"):
        TrainingScope(patch_side_mm=(0.0, 5.0))


def test_the_needs_roi_reason_in_full() -> None:
    limits = ScopeLimits(min_side_px=20, max_side_px=100, max_extent_mm=30.0)
    reason = needs_roi_reason(Measured(400, 300, (40.0, 30.0)), limits, "left.cc.v2.dcm")
    assert reason == (
        "the image is 400x300 px (40 x 30 mm), larger than the mass patches this model was trained on (20..100 px a "
        "side, at most 30 mm), and the model answers only for such patches, never for a whole film. Mark the masses to "
        "classify: on the film in the device's web app (Films waiting for a region), in your viewer (a DICOM "
        'measurement report sent with the film), or drop left.cc.v2.roi.json ({"regions": [{"label": "A", "x": ..., '
        '"y": ..., "radius": ...}]}) or a mask beside the scan and submit it again'
    )
    assert "drop NAME.roi.json" in (needs_roi_reason(Measured(5, 5, None), limits) or "")
    assert "drop film.roi.json" in (needs_roi_reason(Measured(5, 5, None), limits, "film") or "")
    with pytest.raises(Exception, match=r"^scope patch_side_px must be 0 < min <= max, got \[0, 5\]$"):
        TrainingScope(patch_side_px=(0, 5))
    assert TrainingScope(patch_side_px=(1, 1), patch_side_mm=(0.1, 0.1)).patch_side_px == (1, 1)
    with pytest.raises(Exception, match=r"^manifest scope is invalid: "):
        TrainingScope.from_dict({"patch_side_px": "wide"})
    with pytest.raises(Exception, match=r"^manifest scope: unknown key\(s\) 'side'"):
        TrainingScope.from_dict({"side": 1})


def test_a_sidecar_at_its_byte_limit_is_read_and_one_byte_more_is_refused() -> None:
    document = json.dumps({"regions": [{"x": 50, "y": 50, "radius": 20}]}).encode()
    at_limit = document + b" " * (MAX_ROI_BYTES - len(document))
    assert parse_sidecar("roi", at_limit, 200, 200) == [Region("A", 50.0, 50.0, 20.0)]
    with pytest.raises(RegionError, match=r"^the \.roi\.json sidecar is 65,537 bytes; at most 65,536 \(16 regions\)"):
        parse_sidecar("roi", at_limit + b" ", 200, 200)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b'{"regions": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            "the .roi.json sidecar nests deeper than any region file does",
        ),
        (b'{"regions": []}', 'the .roi.json sidecar must hold a non-empty list "regions"'),
    ],
    ids=["nested", "empty"],
)
def test_a_sidecar_that_is_no_region_file_is_refused_by_its_exact_words(data: bytes, message: str) -> None:
    with pytest.raises(RegionError) as refused:
        parse_sidecar("roi", data, 200, 200)
    assert str(refused.value) == message


def test_a_mask_that_marks_nothing_is_refused_by_what_it_came_as() -> None:
    """(A .mask.png of one value is refused earlier, as an image: this is a segmentation's frame of zeros.)"""
    with pytest.raises(RegionError) as refused:
        mask_regions(np.zeros((20, 30), bool), 30, 20, "the segmentation's mask")
    assert str(refused.value) == "the segmentation's mask marks no pixel"
