"""The fused Grad-CAM rule and the overlay, shared by the Keras reference (training) and the device.

Each backbone gives a class-activation map from its last convolutional block (Grad-CAM, Selvaraju et al. 2017,
for the *malignant logit*: positive evidence for malignancy). With a global-average-pooled head, a raw Grad-CAM
map, ``relu(sum_k mean(d logit / d A_k) * A_k)``, is in logit units: summed over its cells it is the first-order
contribution of that backbone's features to the logit. The maps of the two backbones are therefore commensurate,
and the fused heatmap is:

1. each raw map resized to the model input with bilinear interpolation, each cell placed at the centre of its
   receptive field: a backbone's strided layers can shift it from the cell's nominal centre by a fixed number of
   input pixels (the backbone's ``centre_offset``: ResNet50's 1x1 stride-2 shortcuts and stem move it 15.5 px up
   and left, DenseNet121's 1.5 px), and without that correction ResNet50's evidence lands a cell away from the
   mass;
2. the resized maps summed, so a backbone that carries more evidence weighs more, and a backbone with a flat,
   uninformative map does not move the peak;
3. the sum divided by its maximum, so the heatmap peaks at 1 when there is evidence; a peak under `NO_EVIDENCE`
   (1e-4 logit) is float rounding, not evidence, and leaves the map all zero.

That shape is what the fidelity gate compares. What a reader sees is the same map on one fixed scale per bundle
(`heat_on_scale`, the manifest's ``heat_scale``): the peak's own evidence in logits over the scale, so a region with
little evidence shows little heat instead of being stretched to full colour.

There is one implementation of this rule: the Keras reference and the device both call `fuse_heatmaps`.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

Heatmap = NDArray[np.float32]


NO_EVIDENCE = 1e-4
"""Maps are in logit units: a peak below this is rounding noise, not evidence, and is never stretched to 1."""


def normalise(heatmap: NDArray[np.floating]) -> Heatmap:
    """Scale to [0, 1] by the maximum; negative values are clipped to 0; a map without evidence stays all 0."""
    clipped = np.maximum(np.asarray(heatmap, np.float32), 0.0)
    peak = float(clipped.max()) if clipped.size else 0.0
    if peak <= NO_EVIDENCE:
        return np.zeros_like(clipped)
    return np.asarray(clipped / np.float32(peak), np.float32)


def place_map(cam: NDArray[np.floating], size: int, centre_offset: float = 0.0) -> Heatmap:
    """Bilinear resize of a square map to `size`, cell i centred at ``stride * (i + 0.5) - 0.5 + centre_offset``."""
    cells = cam.shape[0]
    stride = size / cells
    shift = stride * 0.5 - 0.5 + centre_offset
    matrix = np.array([[stride, 0.0, shift], [0.0, stride, shift]], np.float64)
    placed = cv2.warpAffine(
        np.asarray(cam, np.float32), matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return np.asarray(placed, np.float32)


def fused_evidence(
    maps: Sequence[NDArray[np.floating]], size: int, centre_offsets: Sequence[float] | None = None
) -> NDArray[np.float32]:
    """The raw per-backbone class-activation maps (square, logit units) placed and summed: steps 1 and 2."""
    if not maps:
        raise ValueError("no class-activation maps to fuse")
    offsets = list(centre_offsets) if centre_offsets is not None else [0.0] * len(maps)
    if len(offsets) != len(maps):
        raise ValueError(f"{len(maps)} maps but {len(offsets)} centre offsets")
    placed = [place_map(cam, size, offset) for cam, offset in zip(maps, offsets, strict=True)]
    return np.asarray(np.sum(placed, axis=0), np.float32)


def fuse_heatmaps(
    maps: Sequence[NDArray[np.floating]], size: int, centre_offsets: Sequence[float] | None = None
) -> Heatmap:
    """Fuse raw per-backbone class-activation maps (square, logit units) into one `size x size` map in [0, 1]."""
    return normalise(fused_evidence(maps, size, centre_offsets))


def evidence_peak(evidence: NDArray[np.floating]) -> float:
    """The fused map's strongest evidence for malignancy (logit units; 0 when there is none)."""
    peak = float(np.max(evidence)) if evidence.size else 0.0
    return peak if peak > NO_EVIDENCE else 0.0


def heat_on_scale(heatmap: Heatmap, peak: float, scale: float | None) -> Heatmap:
    """What is painted: the map in the bundle's fixed units (full colour at `scale` logits, saturating beyond), or,
    for a bundle without a scale, the map as it is (each region's heat scaled to its own peak)."""
    if scale is None:
        return heatmap
    return np.asarray(np.minimum(1.0, heatmap * np.float32(peak / scale)), np.float32)


def overlay(gray: NDArray[np.uint8], heatmap: Heatmap, alpha: float = 0.4) -> NDArray[np.uint8]:
    """A colour (BGR) picture of `gray` with the heatmap in the JET colour map over it; weak evidence stays clear."""
    height, width = gray.shape[:2]
    heat = np.asarray(cv2.resize(heatmap, (width, height), interpolation=cv2.INTER_LINEAR), np.float32)
    colours = cv2.applyColorMap(cv2.convertScaleAbs(heat, alpha=255.0), cv2.COLORMAP_JET)  # levels rounded to nearest
    base = cv2.cvtColor(gray.reshape(height, width), cv2.COLOR_GRAY2BGR)
    weight = np.multiply(heat, np.float32(alpha), out=heat)  # in place: a fresh full-size float array costs more
    return np.asarray(cv2.blendLinear(base, colours, 1 - weight, weight), np.uint8)  # per-pixel weights, rounded


def peak_location(heatmap: Heatmap) -> tuple[int, int]:
    """(x, y) of the heatmap's maximum."""
    row, col = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return int(col), int(row)


def heatmap_correlation(first: NDArray[np.floating], second: NDArray[np.floating]) -> float:
    """Pearson correlation of two heatmaps; two constant maps that agree (no evidence in either) count as 1."""
    a, b = np.ravel(first).astype(np.float64), np.ravel(second).astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return 1.0 if a.std() == b.std() == 0 and np.allclose(a, b, atol=1e-6) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


def top_region_overlap(first: NDArray[np.floating], second: NDArray[np.floating], fraction: float = 0.2) -> float:
    """Intersection over union of the two heatmaps' top-`fraction` pixels."""
    a, b = np.ravel(first), np.ravel(second)
    count = max(1, round(fraction * a.size))
    top_a = set(np.argsort(a)[-count:].tolist())
    top_b = set(np.argsort(b)[-count:].tolist())
    return len(top_a & top_b) / len(top_a | top_b)
