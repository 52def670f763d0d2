"""The fused Grad-CAM rule shared by the Keras reference and the device."""

from __future__ import annotations

import numpy as np
import pytest

from edge_app.gradcam import fuse_heatmaps, normalise, overlay, peak_location, place_map


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
