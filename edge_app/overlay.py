"""The picture a clinician opens: the whole scan in its own geometry, every region outlined and labelled with its
probability, the Grad-CAM heat inside each region, a colour scale, and a zoomed view of each region as the model saw it.

The scan is scaled to a viewing size with its aspect kept and never padded (a patch is enlarged to `MIN_VIEW_SIDE` so
it stays readable); heat is drawn only inside each region as marked (its circle or box), so nothing outside a region
is coloured; each zoom shows the whole square the model looked at, with its heat.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_app.decode import Gray8
from edge_app.errors import InputImageError
from edge_app.gradcam import Heatmap, overlay
from edge_app.regions import Box

VIEW_SIDE = 1024
MIN_VIEW_SIDE = 512
ZOOM_SIDE = 256
MARGIN = 12
CAPTION = 22
LEGEND_HEIGHT = 56
THUMB_WIDTH = 240  # the results page shows each overlay this wide
THUMB_JPEG = (cv2.IMWRITE_JPEG_QUALITY, 85)
NOTICE = "Research software - NOT FOR CLINICAL USE"
_OUTLINE = (0, 215, 255)  # BGR amber: visible on grey tissue and on the JET colours
_TEXT = (255, 255, 255)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
BGR = NDArray[np.uint8]


@dataclass(frozen=True)
class RegionView:
    """What the overlay draws of one region: its outline, its crop window and the model's heat over that window."""

    label: str
    caption: str  # "A  p=0.873  malignant"
    outline: Box  # the region as marked
    circle: tuple[float, float, float] | None  # (cx, cy, radius) when marked as a circle
    window: Box  # the square the model saw (may reach beyond the image)
    crop: Gray8  # the pixels of that square
    heatmap: Heatmap | None  # over `window`, in [0, 1] on the bundle's heat scale


def render(
    scan: Gray8, regions: Sequence[RegionView], headline: str | None = None, heat_scale: float | None = None
) -> BGR:
    """The composed overlay picture (BGR); `headline`, when given, is written over the top of the scan (what a
    picture without regions says instead, e.g. why nothing was classified); the legend gives the bundle's
    `heat_scale` (None: an older bundle, each region's heat scaled to its own peak)."""
    height, width = scan.shape
    scale = min(VIEW_SIDE, max(MIN_VIEW_SIDE, height, width)) / max(height, width)
    view_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    heated = [region for region in regions if region.heatmap is not None]
    if scale > 1:
        view = _enlarged_with_heat(scan, heated, scale, view_size)
    else:
        shown = cv2.resize(scan, view_size, interpolation=cv2.INTER_AREA)
        view = np.asarray(cv2.cvtColor(np.asarray(shown, np.uint8), cv2.COLOR_GRAY2BGR), np.uint8)
        for region in heated:
            _paint_heat(view, region, scale)
    for region in regions:
        _outline(view, region, scale)
    if headline is not None:
        _label(view, headline, (4, 18))
    panel = _panel(regions, view.shape[0], heat_scale)
    canvas_height = max(view.shape[0], panel.shape[0]) + CAPTION
    canvas = np.zeros((canvas_height, view.shape[1] + panel.shape[1], 3), np.uint8)
    canvas[: view.shape[0], : view.shape[1]] = view
    canvas[: panel.shape[0], view.shape[1] :] = panel
    cv2.putText(canvas, NOTICE, (MARGIN, canvas_height - 7), _FONT, 0.5, _TEXT, 1, cv2.LINE_AA)
    return canvas


def thumbnail_jpeg(picture: BGR) -> bytes:
    """The results page's copy of an overlay picture, `THUMB_WIDTH` wide, as JPEG bytes. Halved by 2 x 2 means while
    at least twice as wide (OpenCV's fast path for area averaging, which needs even sides: an odd last row or column,
    a thousandth of the picture, is left out), then area-resampled the rest of the way: the same picture as one area
    resize within a grey level or two, in a third of its time."""
    height, width = picture.shape[:2]
    small = picture
    while small.shape[1] >= 2 * THUMB_WIDTH:
        half = (small.shape[1] // 2, small.shape[0] // 2)
        even = small[: 2 * half[1], : 2 * half[0]]
        small = np.asarray(cv2.resize(even, half, interpolation=cv2.INTER_AREA), np.uint8)
    size = (THUMB_WIDTH, max(1, round(height * THUMB_WIDTH / width)))
    ok, encoded = cv2.imencode(".jpg", cv2.resize(small, size, interpolation=cv2.INTER_AREA), THUMB_JPEG)
    if not ok:
        raise InputImageError(f"a {width} x {height} overlay's thumbnail could not be encoded as JPEG")
    return bytes(encoded.tobytes())


def _enlarged_with_heat(scan: Gray8, heated: Sequence[RegionView], scale: float, view_size: tuple[int, int]) -> BGR:
    """A scan smaller than the view (a patch), its heat blended at the scan's own resolution and then enlarged:
    the same picture as blending after enlarging (the heat is smooth), for a 96 px patch a 28th of the pixels. Heat
    still shows only inside each region as drawn at the view's size."""
    plain = np.asarray(cv2.cvtColor(scan, cv2.COLOR_GRAY2BGR), np.uint8)
    view = np.asarray(cv2.resize(plain, view_size, interpolation=cv2.INTER_CUBIC), np.uint8)
    if not heated:
        return view
    for region in heated:
        _paint_heat(plain, region, 1.0)
    hot = cv2.resize(plain, view_size, interpolation=cv2.INTER_CUBIC)
    inside = np.zeros(view.shape[:2], np.uint8)
    for region in heated:
        _draw_shape(inside, region, scale, 1, -1)
    return np.asarray(cv2.copyTo(hot, inside, view), np.uint8)


def _paint_heat(view: BGR, region: RegionView, scale: float) -> None:
    """Blend the region's heat into the view, over the part of its window that lies inside the image."""
    assert region.heatmap is not None
    window = region.window
    x0, y0 = round(window.x0 * scale), round(window.y0 * scale)
    x1, y1 = round(window.x1 * scale), round(window.y1 * scale)
    if x1 <= x0 or y1 <= y0:
        return
    heat = np.asarray(cv2.resize(region.heatmap, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR), np.float32)
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x1, view.shape[1]), min(y1, view.shape[0])
    if cx1 <= cx0 or cy1 <= cy0:
        return
    patch = view[cy0:cy1, cx0:cx1]
    inside = np.zeros(patch.shape[:2], np.uint8)  # the heat is shown inside the region as marked, nowhere else
    _draw_shape(inside, region, scale, 1, -1, origin=(cx0, cy0))
    part = np.multiply(heat[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0], inside, dtype=np.float32)
    gray = np.asarray(cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY), np.uint8)
    view[cy0:cy1, cx0:cx1] = overlay(gray, part)


def _draw_shape(
    image: NDArray[np.uint8],
    region: RegionView,
    scale: float,
    colour: Any,
    thickness: int,
    origin: tuple[int, int] = (0, 0),
) -> None:
    """The region's circle or box, in view coordinates less `origin` (the view pixel at `image`'s corner; filled
    when `thickness` is -1)."""
    left, top = origin
    if region.circle is not None:
        cx, cy, radius = region.circle
        centre = (round(cx * scale) - left, round(cy * scale) - top)
        cv2.circle(image, centre, max(2, round(radius * scale)), colour, thickness, cv2.LINE_AA)
    else:
        box = region.outline
        corners = (
            (round(box.x0 * scale) - left, round(box.y0 * scale) - top),
            (round(box.x1 * scale) - left, round(box.y1 * scale) - top),
        )
        cv2.rectangle(image, *corners, colour, thickness, cv2.LINE_AA)


def _outline(view: BGR, region: RegionView, scale: float) -> None:
    _draw_shape(view, region, scale, _OUTLINE, 2)
    if region.circle is not None:
        cx, cy, radius = region.circle
        anchor = (round((cx + radius) * scale) + 4, round(cy * scale) + 5)  # beside the circle, never over the mass
    else:
        anchor = (round(region.outline.x0 * scale), round(region.outline.y0 * scale) - 6)
    _label(view, region.caption, (max(anchor[0], 2), max(anchor[1], 16)))


def _label(image: BGR, text: str, origin: tuple[int, int]) -> None:
    """Text on a dark band, readable over any tissue."""
    (text_width, text_height), baseline = cv2.getTextSize(text, _FONT, 0.5, 1)
    x, y = min(origin[0], max(0, image.shape[1] - text_width - 4)), origin[1]
    cv2.rectangle(image, (x - 2, y - text_height - 3), (x + text_width + 2, y + baseline), (0, 0, 0), -1)
    cv2.putText(image, text, (x, y), _FONT, 0.5, _OUTLINE, 1, cv2.LINE_AA)


def _zoom(region: RegionView) -> BGR:
    """The square the model saw at `ZOOM_SIDE`, its heat blended at the smaller of the crop's size and the zoom's."""
    zoom = (ZOOM_SIDE, ZOOM_SIDE)
    if region.heatmap is not None and region.crop.shape[0] < ZOOM_SIDE:
        return np.asarray(cv2.resize(overlay(region.crop, region.heatmap), zoom, interpolation=cv2.INTER_CUBIC))
    gray = np.asarray(cv2.resize(region.crop, zoom, interpolation=cv2.INTER_CUBIC), np.uint8)
    if region.heatmap is None:
        return np.asarray(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), np.uint8)
    return overlay(gray, region.heatmap)


def heat_legend(heat_scale: float | None) -> str:
    """What full colour means: the bundle's fixed scale in logits, or (an older bundle) each region's own peak."""
    if heat_scale is None:
        return "the region's strongest"
    return f"{heat_scale:.2f} logit or more"


@functools.lru_cache(maxsize=8)
def _legend(width: int, heat_scale: float | None) -> BGR:
    """The JET scale from no evidence (left) to full colour (right): on a bundle's fixed scale, the malignant logit's
    Grad-CAM evidence at which colour saturates, the same for every region, so colour compares regions too. Drawn
    once per width and scale (every overlay of a bundle has the same); the caller copies it, never draws on it."""
    legend = np.zeros((LEGEND_HEIGHT, width, 3), np.uint8)
    ramp = np.tile(np.linspace(0, 255, width - 2 * MARGIN).astype(np.uint8), (14, 1))
    legend[22:36, MARGIN : width - MARGIN] = cv2.applyColorMap(ramp, cv2.COLORMAP_JET)
    cv2.putText(legend, "Grad-CAM: evidence for malignancy", (MARGIN, 15), _FONT, 0.45, _TEXT, 1, cv2.LINE_AA)
    cv2.putText(legend, "none", (MARGIN, 51), _FONT, 0.4, _TEXT, 1, cv2.LINE_AA)
    text = heat_legend(heat_scale)
    (text_width, _), _ = cv2.getTextSize(text, _FONT, 0.4, 1)
    cv2.putText(legend, text, (width - MARGIN - text_width, 51), _FONT, 0.4, _TEXT, 1, cv2.LINE_AA)
    return legend


def _panel(regions: Sequence[RegionView], view_height: int, heat_scale: float | None) -> BGR:
    """Zoomed regions in columns beside the scan, the legend above them."""
    cell = ZOOM_SIDE + CAPTION + MARGIN
    per_column = max(1, (max(view_height, cell + LEGEND_HEIGHT) - LEGEND_HEIGHT) // cell)
    columns = max(1, -(-len(regions) // per_column))
    width = columns * (ZOOM_SIDE + MARGIN) + MARGIN
    rows = min(len(regions), per_column)
    panel = np.zeros((LEGEND_HEIGHT + rows * cell, width, 3), np.uint8)
    panel[:LEGEND_HEIGHT, : ZOOM_SIDE + 2 * MARGIN] = _legend(ZOOM_SIDE + 2 * MARGIN, heat_scale)
    for index, region in enumerate(regions):
        column, row = divmod(index, per_column)
        x, y = MARGIN + column * (ZOOM_SIDE + MARGIN), LEGEND_HEIGHT + row * cell + CAPTION
        panel[y : y + ZOOM_SIDE, x : x + ZOOM_SIDE] = _zoom(region)
        cv2.putText(panel, region.caption, (x, y - 6), _FONT, 0.5, _OUTLINE, 1, cv2.LINE_AA)
    return panel
