"""The detector's view of a film, one implementation for training and the device: the breast cut out of the film,
resampled to the detector's one pixel spacing, turned chest wall left, its contrast set by the breast's own
intensities, on a fixed canvas; and the detector's output read back as candidate regions in film pixels.

- Breast: the largest bright component of the film (Otsu's threshold on a small copy, closed over small gaps), so
  labels, markers and the scanner's border, which are never the largest, are cut away with the air.
- Orientation: a film whose breast reaches the right edge (chest wall right) is mirrored, so every canvas has the
  chest wall at x = 0 and the detector learns one anatomy, not two.
- Spacing: the film is averaged over blocks of whole film pixels, as many as fit in `DetectorInput.spacing_mm`, and
  the breast's crop of that copy resized (``INTER_AREA``) to the detector's spacing; a breast larger than the canvas
  is shrunk further to fit, and the spacing it ends up at (`FilmFrame.spacing_mm`) is what the detector's scope
  checks.
- Contrast: the breast's 1st..99th intensity percentiles fill 0..255 and everything outside the breast is 0, so a
  scanned film and a digital one, windowed differently, look alike to the detector.
- Candidates: peaks of the centre heatmap (a cell at least as high as its eight neighbours) at or above a score,
  highest first, each with the radius the size head gives there, mapped back to the film by the frame.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_app.decode import Gray8
from edge_app.errors import BundleError, InputImageError
from edge_app.regions import Region, default_label
from edge_app.strict import checked_fields

MASK_SIDE_PX = 256
"""The longer side of the small copy the breast is found on: fast on any film, fine enough for a crop's border."""
CONTRAST_PERCENTILES = (1.0, 99.0)


@dataclass(frozen=True)
class DetectorInput:
    """What the detector was trained on: the pixel spacing of its canvas, the canvas (height, width) and how many
    canvas pixels one heatmap cell spans. Stored in the manifest; the device builds the same canvas from it."""

    spacing_mm: float = 0.8
    canvas: tuple[int, int] = (320, 256)
    stride: int = 4

    def __post_init__(self) -> None:
        if not 0.05 <= self.spacing_mm <= 5.0:
            raise BundleError(f"detector spacing_mm must be 0.05..5, got {self.spacing_mm}")
        if self.stride < 1 or any(side < 16 or side % self.stride for side in self.canvas):
            raise BundleError(f"detector canvas {self.canvas} must be at least 16 px and a multiple of {self.stride}")

    @property
    def cells(self) -> tuple[int, int]:
        """The heatmap's (height, width)."""
        return self.canvas[0] // self.stride, self.canvas[1] // self.stride

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DetectorInput:
        checked = checked_fields(cls, values, "detector input", BundleError)
        if "canvas" in checked:
            checked["canvas"] = tuple(int(side) for side in checked["canvas"])
        return cls(**checked)


@dataclass(frozen=True)
class FilmFrame:
    """Where the canvas lies on the film: ``canvas_x = (film_x - origin_x) * scale``, mirrored about the crop's width
    when `mirrored`; ``canvas_y = (film_y - origin_y) * scale``. `spacing_mm` is the canvas's pixel spacing."""

    origin_x: int
    origin_y: int
    crop_width: int  # film pixels
    scale: float  # canvas pixels per film pixel
    mirrored: bool
    spacing_mm: float

    def to_canvas(self, region: Region) -> Region:
        x = (region.cx - self.origin_x) * self.scale
        if self.mirrored:
            x = self.crop_width * self.scale - x
        return Region(region.label, x, (region.cy - self.origin_y) * self.scale, region.radius * self.scale)

    def to_film(self, region: Region) -> Region:
        x = self.crop_width * self.scale - region.cx if self.mirrored else region.cx
        return Region(
            region.label,
            x / self.scale + self.origin_x,
            region.cy / self.scale + self.origin_y,
            region.radius / self.scale,
        )


@dataclass(frozen=True)
class Candidate:
    """A place the detector proposes (its centre and radius, film pixels) and its score in [0, 1]."""

    region: Region
    score: float


@dataclass(frozen=True)
class Breast:
    """The breast found on a film: its mask on the small copy it was found on (`shrink` of the film's size in each
    axis, 1 for a film no larger than `MASK_SIDE_PX`) and its bounds in film pixels (half-open)."""

    mask: NDArray[np.bool_]
    shrink: tuple[float, float]  # (rows, columns): small-copy pixels per film pixel
    top: int
    bottom: int
    left: int
    right: int


def find_breast(gray: Gray8) -> Breast:
    """The largest component above Otsu's threshold on a small copy, its holes filled, and its bounds on the film
    (every film pixel whose nearest small-copy pixel is breast lies inside them)."""
    height, width = gray.shape
    shrink = min(1.0, MASK_SIDE_PX / max(height, width))
    small = cv2.resize(
        gray, (max(1, round(width * shrink)), max(1, round(height * shrink))), interpolation=cv2.INTER_AREA
    )
    _, bright = cv2.threshold(small, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    bright = cv2.morphologyEx(bright, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=8)
    if count < 2:
        raise InputImageError("no breast found on the film: it is one flat intensity")
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    component = np.where(labels == largest, 255, 0).astype(np.uint8)
    contours, _ = cv2.findContours(component, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    mask = cv2.drawContours(np.zeros_like(component), contours, -1, 255, thickness=cv2.FILLED) > 0
    per_row, per_column = small.shape[0] / height, small.shape[1] / width
    rows, columns = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return Breast(
        mask,
        (per_row, per_column),
        math.floor(rows[0] / per_row),
        min(height, math.ceil((rows[-1] + 1) / per_row)),
        math.floor(columns[0] / per_column),
        min(width, math.ceil((columns[-1] + 1) / per_column)),
    )


def frame_film(gray: Gray8, spacing_mm: float, spec: DetectorInput) -> tuple[Gray8, FilmFrame]:
    """The detector's canvas of a film whose pixels are `spacing_mm` apart, and where it lies on the film.

    The film is first averaged over square blocks of whole film pixels (`reduction_factor`: OpenCV's integer
    ``INTER_AREA`` path, one pass over the film), and everything after works on that copy: the breast is found on
    it, and its crop is windowed by a 256-entry table and resized to the canvas. The window comes from the film's
    own pixels (their percentiles, on a regular full-resolution sample of the breast: averaging first would narrow
    them and saturate the bright masses the detector looks for). So a 3328 x 4096 film costs one reduction; no
    full-size copy, float or mask is made."""
    if not spacing_mm > 0:
        raise InputImageError(f"a film's pixel spacing must be positive, got {spacing_mm}")
    factor = reduction_factor(spacing_mm, spec)
    reduced = _reduce(gray, factor)
    breast = find_breast(reduced)
    top, left = breast.top * factor, breast.left * factor
    height, width = (breast.bottom - breast.top) * factor, (breast.right - breast.left) * factor
    scale = min(spacing_mm / spec.spacing_mm, spec.canvas[0] / height, spec.canvas[1] / width)
    size = (max(1, min(spec.canvas[1], round(width * scale))), max(1, min(spec.canvas[0], round(height * scale))))
    step = max(1, int(1 / scale))  # one film pixel per canvas pixel: as many as the canvas has
    sample = gray[top : top + height : step, left : left + width : step]
    inside_sample = _breast_at(
        breast, (top + np.arange(sample.shape[0]) * step) / factor, (left + np.arange(sample.shape[1]) * step) / factor
    )
    low, high = np.percentile(sample[inside_sample], CONTRAST_PERCENTILES)
    table = np.rint(np.clip((np.arange(256, dtype=np.float32) - low) * (255.0 / max(high - low, 1.0)), 0, 255))
    crop = reduced[breast.top : breast.bottom, breast.left : breast.right]
    resized = cv2.resize(cv2.LUT(crop, table.astype(np.uint8)), size, interpolation=cv2.INTER_AREA)
    per_canvas_pixel = 1 / (scale * factor)  # reduced pixels
    centres_y = breast.top + (np.arange(size[1]) + 0.5) * per_canvas_pixel
    centres_x = breast.left + (np.arange(size[0]) + 0.5) * per_canvas_pixel
    inside = _breast_at(breast, centres_y, centres_x)  # the mask at each canvas pixel's centre
    resized[~inside] = 0
    mirrored = bool(inside[:, size[0] // 2 :].sum() > inside[:, : size[0] - size[0] // 2].sum())
    canvas = np.zeros(spec.canvas, np.uint8)
    canvas[: size[1], : size[0]] = resized[:, ::-1] if mirrored else resized
    return canvas, FilmFrame(left, top, width, scale, mirrored, spacing_mm / scale)


def reduction_factor(spacing_mm: float, spec: DetectorInput) -> int:
    """How many film pixels (in each axis) one pixel of the film's first, block-averaged copy spans: the most whole
    film pixels not coarser than the detector's spacing (1 when the film is already that coarse)."""
    return max(1, math.floor(spec.spacing_mm / spacing_mm + 1e-6))


def _reduce(gray: Gray8, factor: int) -> Gray8:
    """The film averaged over `factor` x `factor` blocks (the last rows and columns that fill no block dropped:
    less than one detector pixel)."""
    if factor == 1:
        return gray
    rows, columns = gray.shape[0] // factor, gray.shape[1] // factor
    if rows == 0 or columns == 0:
        raise InputImageError(f"the film ({gray.shape[1]}x{gray.shape[0]}) is smaller than one detector pixel")
    whole = gray[: rows * factor, : columns * factor]
    return np.asarray(cv2.resize(whole, (columns, rows), interpolation=cv2.INTER_AREA), np.uint8)


def _breast_at(breast: Breast, rows: NDArray[Any], columns: NDArray[Any]) -> NDArray[np.bool_]:
    """Whether each film point (`rows` x `columns`, film pixels) lies in the breast, read off the small mask."""
    per_row, per_column = breast.shrink
    small_rows = np.minimum((rows * per_row).astype(int), breast.mask.shape[0] - 1)
    small_columns = np.minimum((columns * per_column).astype(int), breast.mask.shape[1] - 1)
    return np.asarray(breast.mask[np.ix_(small_rows, small_columns)])


def candidates(
    heat: NDArray[np.float32],
    radius: NDArray[np.float32],
    frame: FilmFrame,
    spec: DetectorInput,
    max_candidates: int,
    min_score: float,
) -> list[Candidate]:
    """The heatmap's peaks at or above `min_score`, highest first, at most `max_candidates`, as film regions
    labelled A, B, ... in that order. `heat` is the centre score per cell, `radius` the size head's radius in
    canvas pixels per cell."""
    if heat.shape != spec.cells or radius.shape != spec.cells:
        raise BundleError(f"the detector gave maps of {heat.shape} and {radius.shape}, expected {spec.cells}")
    peaks = (heat >= cv2.dilate(heat, np.ones((3, 3), np.uint8))) & (heat >= min_score)
    rows, columns = np.nonzero(peaks)
    order = np.argsort(-heat[rows, columns], kind="stable")[:max_candidates]
    found = []
    for index, at in enumerate(order):
        row, column = int(rows[at]), int(columns[at])
        centre = Region(
            default_label(index),
            (column + 0.5) * spec.stride,
            (row + 0.5) * spec.stride,
            max(float(radius[row, column]), spec.stride / 2),
        )
        found.append(Candidate(frame.to_film(centre), float(heat[row, column])))
    return found


def cell_of(region: Region, spec: DetectorInput) -> tuple[int, int]:
    """The heatmap cell (row, column) that holds a canvas region's centre: where training puts its target."""
    row = min(spec.cells[0] - 1, max(0, math.floor(region.cy / spec.stride)))
    column = min(spec.cells[1] - 1, max(0, math.floor(region.cx / spec.stride)))
    return row, column
