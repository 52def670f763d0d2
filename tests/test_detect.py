"""The detector's canvas and candidates (`edge_app.detect`): one rule for training and the device, so these pin it:
the breast found and everything else cut away, one orientation, one spacing, and peaks read back onto the film."""

from __future__ import annotations

import numpy as np
import pytest

from edge_app.detect import Candidate, DetectorInput, FilmFrame, candidates, cell_of, find_breast, frame_film
from edge_app.errors import BundleError, InputImageError
from edge_app.regions import Region

SPEC = DetectorInput(spacing_mm=0.8, canvas=(320, 256), stride=4)
MASS = Region("A", 500.0, 900.0, 60.0)


def _film(chest_wall_left: bool = True) -> np.ndarray:
    """A 0.1 mm film, 2000 x 1600: a half-ellipse of tissue against the chest wall, a bright mass in it, and a
    brighter label in the far corner (which must not count as breast)."""
    rows, columns = np.mgrid[0:2000, 0:1600].astype(np.float32)
    tissue = (columns / 1200) ** 2 + ((rows - 1000) / 900) ** 2 <= 1
    film = np.where(tissue, 120 + rows // 100, 8).astype(np.uint8)  # a texture that mirrors onto itself
    film[(columns - MASS.cx) ** 2 + (rows - MASS.cy) ** 2 <= MASS.radius**2] = 200
    film[1850:1950, 1400:1550] = 255  # a lead marker's label
    return film if chest_wall_left else np.ascontiguousarray(film[:, ::-1])


def test_the_breast_is_the_largest_bright_part_and_the_label_is_not() -> None:
    breast = find_breast(_film())  # found on a 256 px copy
    assert breast.mask.shape == (256, 205) and breast.shrink == (256 / 2000, 205 / 1600)

    def at(row: int, column: int) -> bool:
        return bool(breast.mask[int(row * breast.shrink[0]), int(column * breast.shrink[1])])

    assert at(1000, 100) and at(900, 500) and not at(1900, 1450) and not at(50, 1550)
    assert (breast.top, breast.bottom, breast.left, breast.right) == pytest.approx((100, 1900, 0, 1200), abs=10)


def test_the_breasts_bounds_are_found_away_from_the_films_edges_too() -> None:
    film = np.full((2200, 2000), 8, np.uint8)
    film[100:2100, 400:2000] = _film()  # a margin above, below and left of the breast
    breast = find_breast(film)
    assert (breast.top, breast.bottom, breast.left, breast.right) == pytest.approx((200, 2000, 400, 1600), abs=10)


def test_the_canvas_holds_the_breast_at_the_detectors_spacing_chest_wall_left_with_nothing_else() -> None:
    canvas, frame = frame_film(_film(), 0.1, SPEC)
    assert canvas.shape == (320, 256) and canvas.dtype == np.uint8
    assert frame.scale == 0.125 and frame.spacing_mm == pytest.approx(0.8) and not frame.mirrored
    # the breast's bounds, found on a 256 px copy: within a few film pixels of (0, 100) and 1200 wide
    assert (frame.origin_x, frame.origin_y, frame.crop_width) == pytest.approx((0, 100, 1200), abs=4)
    mass = frame.to_canvas(MASS)
    assert (mass.cx, mass.cy, mass.radius) == pytest.approx((62.5, 100.0, 7.5), abs=0.5)
    assert canvas[round(mass.cy), round(mass.cx)] == 255  # the brightest of the breast
    assert canvas[:, 151:].max() == 0 and canvas[226:].max() == 0  # beyond the breast: nothing, the label neither
    assert 0 < canvas[100, 20] < 255


def test_a_film_with_the_chest_wall_right_gives_the_same_canvas_mirrored_back() -> None:
    canvas, frame = frame_film(_film(), 0.1, SPEC)
    mirrored_canvas, mirrored = frame_film(_film(chest_wall_left=False), 0.1, SPEC)
    assert mirrored.mirrored and not frame.mirrored
    difference = np.abs(mirrored_canvas.astype(int) - canvas)
    assert difference.mean() < 1 and np.percentile(difference, 99) <= 2  # resampling, and the border's few pixels
    mass = Region("A", 1599 - MASS.cx, MASS.cy, MASS.radius)
    assert mirrored.to_canvas(mass).cx == pytest.approx(frame.to_canvas(MASS).cx, abs=0.2)
    back = mirrored.to_film(mirrored.to_canvas(mass))
    assert (back.cx, back.cy, back.radius) == pytest.approx((mass.cx, mass.cy, mass.radius))


def test_a_breast_larger_than_the_canvas_is_shrunk_to_fit_and_its_spacing_says_so() -> None:
    canvas, frame = frame_film(_film(), 0.2, SPEC)  # the same pixels at twice the spacing: 36 x 40 cm of breast
    assert frame.scale == pytest.approx(320 / 1800, rel=0.01) and frame.spacing_mm == pytest.approx(0.2 / frame.scale)
    assert canvas[:, :1].max() > 0 and canvas[-1:, :].max() > 0


def test_a_flat_film_is_refused() -> None:
    with pytest.raises(InputImageError, match=r"^no breast found on the film: it is one flat intensity$"):
        frame_film(np.zeros((100, 80), np.uint8), 0.1, SPEC)
    with pytest.raises(InputImageError, match="spacing must be positive"):
        frame_film(_film(), 0.0, SPEC)


def test_candidates_are_the_peaks_above_the_score_highest_first_on_the_film() -> None:
    heat = np.zeros(SPEC.cells, np.float32)
    radius = np.full(SPEC.cells, 10.0, np.float32)
    heat[10, 20], heat[11, 21] = 0.9, 0.5  # one mass: its neighbour is no second peak
    heat[40, 5], radius[40, 5] = 0.7, 0.5  # a radius below half a cell is half a cell
    heat[70, 50] = 0.2  # below min_score
    frame = FilmFrame(origin_x=100, origin_y=50, crop_width=1000, scale=0.1, mirrored=True, spacing_mm=1.0)
    found = candidates(heat, radius, frame, SPEC, max_candidates=4, min_score=0.3)
    assert [(c.region.label, c.score) for c in found] == [("A", pytest.approx(0.9)), ("B", pytest.approx(0.7))]
    first = found[0].region
    assert (first.cx, first.cy, first.radius) == pytest.approx((100 + 1000 - 82 / 0.1, 50 + 42 / 0.1, 100.0))
    assert found[1].region.radius == pytest.approx(20.0)
    assert candidates(heat, radius, frame, SPEC, max_candidates=1, min_score=0.3) == found[:1]
    assert candidates(heat, radius, frame, SPEC, max_candidates=4, min_score=0.95) == []
    assert isinstance(found[0], Candidate)


def test_maps_of_the_wrong_shape_are_a_bundle_error_and_cells_stay_on_the_map() -> None:
    with pytest.raises(BundleError, match=r"expected \(80, 64\)"):
        candidates(
            np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32), FilmFrame(0, 0, 1, 1, False, 1), SPEC, 4, 0
        )
    assert cell_of(Region("A", 9.0, 5.0, 3.0), SPEC) == (1, 2)
    assert cell_of(Region("A", 999.0, -4.0, 3.0), SPEC) == (0, 63)
    with pytest.raises(BundleError, match="multiple of 4"):
        DetectorInput(canvas=(322, 256))
    assert DetectorInput.from_dict({"spacing_mm": 0.8, "canvas": [320, 256], "stride": 4}) == SPEC
    with pytest.raises(BundleError, match="colour"):
        DetectorInput.from_dict({"colour": 1})


def _small_film() -> np.ndarray:
    """A 0.5 mm film of 120 x 100 px whose every pixel is placed: a breast in rows 20..99, columns 0..59 with its
    upper outer corner (rows 20..39, columns 40..59) missing, crossed by a 3 px dark fold (rows 50..52), a dark
    8 px hole (rows 70..77, columns 20..27), a band of 81 (rows 90..99); a label in the top-right corner, met first."""
    film = np.full((120, 100), 10, np.uint8)
    film[20:100, :60] = 150
    film[20:40, 40:60] = 10
    film[50:53, :60] = 10
    film[70:78, 20:28] = 10
    film[90:100, :60] = 81
    film[2:7, 70:80] = 255
    return film


def test_the_breast_mask_is_exactly_the_breast_across_a_fold_with_its_holes_filled() -> None:
    expected = np.zeros((120, 100), bool)
    expected[20:100, :60] = True
    expected[20:40, 40:60] = False
    breast = find_breast(_small_film())  # no larger than the search's copy: found on the film itself
    assert np.array_equal(breast.mask, expected) and breast.shrink == (1.0, 1.0)
    assert (breast.top, breast.bottom, breast.left, breast.right) == (20, 100, 0, 60)


def test_the_canvas_of_a_small_film_pixel_by_pixel() -> None:
    """Rows 20..99 and columns 0..59 at half size fill canvas rows 0..39 and columns 0..29: 150 (the 99th
    percentile) is 255, 10 (the 1st) is 0, 81 is 71 * 255 / 140 = 129.3; what lies outside the breast is 0."""
    spec = DetectorInput(spacing_mm=1.0, canvas=(48, 32), stride=4)
    canvas, frame = frame_film(_small_film(), 0.5, spec)
    assert frame == FilmFrame(origin_x=0, origin_y=20, crop_width=60, scale=0.5, mirrored=False, spacing_mm=1.0)
    assert canvas[40:].max() == 0 and canvas[:, 30:].max() == 0  # beyond the breast's bounds
    assert canvas[:10, 20:30].max() == 0  # the missing corner, inside the bounds
    assert canvas[20, 29] == canvas[34, 0] == 255 and canvas[25:29, 10:14].max() == 0  # the breast, its hole
    assert canvas[35, 29] == canvas[39, 0] == 129  # the band of 81 at rows 90..99: canvas rows 35..39
    mirrored_canvas, mirrored = frame_film(np.ascontiguousarray(_small_film()[:, ::-1]), 0.5, spec)
    assert np.array_equal(mirrored_canvas, canvas) and mirrored.mirrored and mirrored.origin_x == 40


def test_a_wide_breast_is_shrunk_to_the_canvas_width() -> None:
    _, frame = frame_film(_small_film(), 0.5, DetectorInput(spacing_mm=1.0, canvas=(48, 24), stride=4))
    assert frame.scale == pytest.approx(24 / 60) and frame.spacing_mm == pytest.approx(0.5 / (24 / 60))


def test_a_breast_as_wide_on_both_sides_is_not_mirrored() -> None:
    film = np.full((64, 64), 10, np.uint8)
    film[8:56, 16:48] = 150
    _, frame = frame_film(film, 0.5, DetectorInput(spacing_mm=1.0, canvas=(32, 32), stride=4))
    assert not frame.mirrored and (frame.origin_x, frame.crop_width) == (16, 32)


def test_masses_two_cells_apart_are_two_candidates_and_a_score_at_the_minimum_counts() -> None:
    heat = np.zeros(SPEC.cells, np.float32)
    radius = np.full(SPEC.cells, 4.0, np.float32)
    heat[10, 20], heat[8, 20] = 0.9, 0.95  # two rows apart
    heat[30, 20], heat[30, 18] = 0.8, 0.85  # two columns apart
    heat[50, 50] = 0.5  # exactly the minimum score
    frame = FilmFrame(origin_x=0, origin_y=0, crop_width=256, scale=1.0, mirrored=False, spacing_mm=0.8)
    found = candidates(heat, radius, frame, SPEC, max_candidates=10, min_score=0.5)
    centres = [(c.region.label, c.region.cx, c.region.cy) for c in found]
    assert centres == [
        ("A", 82.0, 34.0),
        ("B", 82.0, 42.0),
        ("C", 74.0, 122.0),
        ("D", 82.0, 122.0),
        ("E", 202.0, 202.0),
    ]


def test_the_frame_maps_canvas_and_film_both_ways_keeping_the_label() -> None:
    frame = FilmFrame(origin_x=100, origin_y=50, crop_width=1000, scale=0.25, mirrored=False, spacing_mm=0.4)
    canvas = frame.to_canvas(Region("C", 300.0, 250.0, 40.0))
    assert canvas == Region("C", 50.0, 50.0, 10.0)
    assert frame.to_film(canvas) == Region("C", 300.0, 250.0, 40.0)


def test_the_detector_input_bounds_and_its_dictionary() -> None:
    for spacing in (0.05, 5.0):
        assert DetectorInput(spacing_mm=spacing).spacing_mm == spacing
    for spacing in (0.049, 5.01):
        with pytest.raises(BundleError, match=rf"^detector spacing_mm must be 0\.05\.\.5, got {spacing}$"):
            DetectorInput(spacing_mm=spacing)
    assert DetectorInput(canvas=(16, 17), stride=1).cells == (16, 17)
    for canvas, stride in (((15, 16), 1), ((16, 16), 0)):
        with pytest.raises(BundleError, match=rf"^detector canvas \({canvas[0]}, 16\) must be at least 16 px"):
            DetectorInput(canvas=canvas, stride=stride)
    assert SPEC.to_dict() == {"spacing_mm": 0.8, "canvas": (320, 256), "stride": 4}
    assert DetectorInput.from_dict(SPEC.to_dict()) == SPEC
    with pytest.raises(BundleError, match=r"^detector input: unknown key"):
        DetectorInput.from_dict({"colour": 1})
    with pytest.raises(BundleError, match=r"expected \(80, 64\)"):  # the radius map right, the heatmap not
        candidates(
            np.zeros((8, 8), np.float32), np.zeros(SPEC.cells, np.float32), FilmFrame(0, 0, 1, 1, False, 1), SPEC, 4, 0
        )
    assert cell_of(Region("A", -3.0, 999.0, 3.0), SPEC) == (79, 0)


def test_a_breast_touching_the_films_top_edge_starts_on_the_canvass_first_row_in_its_own_contrast() -> None:
    rows, columns = np.mgrid[0:1600, 0:1400]
    tissue = (columns / 1000) ** 2 + (rows / 1200) ** 2 <= 1  # a quarter ellipse from the top-left corner
    film = np.where(tissue, 100 + (rows + columns) % 50, 8).astype(np.uint8)  # tissue 100-149 on a dark film
    canvas, frame = frame_film(film, 0.1, SPEC)
    assert (frame.origin_x, frame.origin_y, frame.scale) == (0, 0, 0.125)
    assert (canvas[0] > 0).sum() == 125  # the first canvas row is the breast's first film rows, 1000 px wide
    # the table stretches the breast's own 1st-99th percentiles (100..149): its mean, 124.5, lands mid-scale;
    # the dark background (a fifth of the breast's box) must not widen it
    assert np.median(canvas[canvas > 0]) == pytest.approx(255 * 24.5 / 49, abs=8)
