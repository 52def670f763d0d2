"""The fused Grad-CAM rule shared by the Keras reference and the device."""

from __future__ import annotations

import numpy as np
import pytest

from edge_app.gradcam import (
    fuse_heatmaps,
    heat_on_scale,
    heatmap_correlation,
    normalise,
    overlay,
    peak_location,
    place_map,
    top_region_overlap,
)


def test_cells_land_at_their_receptive_field_centres() -> None:
    cam = np.zeros((3, 3), np.float32)
    cam[1, 1] = 1.0
    assert peak_location(place_map(cam, 96)) in {(47, 47), (47, 48), (48, 47), (48, 48)}
    shifted = place_map(cam, 96, centre_offset=-15.5)
    x, y = peak_location(shifted)
    assert abs(x - 32) <= 1 and abs(y - 32) <= 1


def test_fusion_sums_evidence_so_a_flat_map_does_not_move_the_peak() -> None:
    peaked = np.array([[0, 0, 0], [0, 1.0, 0], [0, 0, 0]], np.float32)
    flat_with_tilt = np.array([[0.30, 0.30, 0.30], [0.30, 0.30, 0.31], [0.30, 0.30, 0.30]], np.float32)
    fused = fuse_heatmaps([peaked, flat_with_tilt], 96)
    assert fused.max() == pytest.approx(1.0)
    x, y = peak_location(fused)
    assert abs(x - 47.5) <= 1 and abs(y - 47.5) <= 1


def test_no_evidence_gives_zeros_and_mismatch_is_an_error() -> None:
    assert not fuse_heatmaps([np.zeros((3, 3)), -np.ones((3, 3))], 32).any()
    with pytest.raises(ValueError, match="centre offsets"):
        fuse_heatmaps([np.ones((3, 3))], 32, [0.0, 1.0])
    with pytest.raises(ValueError, match="no class-activation maps"):
        fuse_heatmaps([], 32)
    assert normalise(np.array([[-1.0, 2.0]])).tolist() == [[0.0, 1.0]]


def test_overlay_is_a_colour_picture_of_the_scan() -> None:
    gray = np.full((40, 60), 100, np.uint8)
    heat = np.zeros((8, 8), np.float32)
    picture = overlay(gray, heat)
    assert picture.shape == (40, 60, 3) and picture.dtype == np.uint8
    assert (picture == 100).all()  # no evidence: the scan shows through unchanged
    heat[4, 4] = 1.0
    assert not (overlay(gray, heat) == 100).all()


def test_placing_a_map_replicates_its_border_cells_and_centres_by_default() -> None:
    cam = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    placed = place_map(cam, 8)
    assert placed.dtype == np.float32 and placed.shape == (8, 8)
    # stride 4: cell centres at 1.5 and 5.5; beyond them the border cell's value, not a fade to black
    assert placed[0, 0] == pytest.approx(1.0) and placed[7, 7] == pytest.approx(4.0)
    assert placed[0, 7] == pytest.approx(2.0) and placed[7, 0] == pytest.approx(3.0)
    np.testing.assert_array_equal(placed, place_map(cam, 8, 0.0))
    assert not np.array_equal(place_map(cam, 8, 1.0), placed)


def test_fusion_places_each_map_at_its_own_offset() -> None:
    cam = np.zeros((3, 3), np.float32)
    cam[1, 1] = 1.0
    shifted = fuse_heatmaps([cam, np.zeros((3, 3))], 96, [-15.5, 0.0])
    np.testing.assert_allclose(shifted, normalise(place_map(cam, 96, -15.5)))
    with pytest.raises(ValueError, match=r"^no class-activation maps to fuse$"):
        fuse_heatmaps([], 32)
    with pytest.raises(ValueError, match=r"^1 maps but 2 centre offsets$"):
        fuse_heatmaps([np.ones((3, 3))], 32, [0.0, 1.0])


def test_evidence_at_the_noise_floor_is_no_evidence() -> None:
    from edge_app.gradcam import NO_EVIDENCE

    assert not normalise(np.full((2, 2), NO_EVIDENCE)).any()
    assert normalise(np.full((2, 2), NO_EVIDENCE)).dtype == np.float32  # a Heatmap whatever it was made from
    assert normalise(np.full((2, 2), NO_EVIDENCE * 2)).tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert normalise(np.zeros((0, 0))).shape == (0, 0)
    assert normalise(np.array([[0.0, 2.0]], np.float64)).dtype == np.float32


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ([-1.0, 1.0], [-2.0, 2.0], 1.0),  # a standard deviation of exactly one is no special case
        ([0.0, 1.0, 2.0], [2.0, 1.0, 0.0], -1.0),
        ([0.3, 0.3], [0.3 + 1e-7, 0.3 + 1e-7], 1.0),  # two empty maps that agree
        ([0.0, 0.0], [0.5, 0.5], 0.0),  # two empty maps that do not
        ([0.0, 0.0], [0.0, 1.0], 0.0),  # an empty map against a map with evidence, either way round
        ([0.0, 1.0], [0.0, 0.0], 0.0),
    ],
)
def test_heatmap_correlation_is_pearsons_and_empty_maps_agree_only_with_each_other(
    first: list[float], second: list[float], expected: float
) -> None:
    assert heatmap_correlation(np.array(first), np.array(second)) == pytest.approx(expected)


def test_top_region_overlap_is_the_iou_of_the_hottest_fraction() -> None:
    ramp = np.arange(10, dtype=np.float32)
    other = ramp.copy()
    other[7], other[8] = other[8], other[7]  # the top two: {8, 9} against {7, 9}
    assert top_region_overlap(ramp, ramp) == 1.0
    assert top_region_overlap(ramp, other, fraction=0.2) == pytest.approx(1 / 3)
    assert top_region_overlap(ramp, other, fraction=0.01) == 1.0  # at least one pixel: {9} against {9}
    assert top_region_overlap(ramp, ramp[::-1].copy(), fraction=0.2) == 0.0


def test_heat_is_painted_in_the_bundles_units_and_saturates_beyond_them() -> None:
    heatmap = np.array([[0.0, 0.5, 1.0]], np.float32)
    assert heat_on_scale(heatmap, 3.0, 2.0).tolist() == [[0.0, 0.75, 1.0]]  # 1.5 scale units at the peak: full
    assert heat_on_scale(heatmap, 1.0, 2.0).tolist() == [[0.0, 0.25, 0.5]]
    assert heat_on_scale(heatmap, 3.0, None) is heatmap  # an older bundle: each region scaled to its own peak
