"""Regions of interest: what the model is asked about, and the one crop rule that turns a region into a model input.

The model classifies a mass *region*, not a whole breast. A region is a centre and a radius in the scan's pixel
coordinates (origin top-left, x right, y down; the radius encloses the whole abnormality, as MIAS draws it) or a box
``[x0, y0, x1, y1]``, which is its enclosing square's circle. `CropRule` is the one rule that cuts a region out: a
square centred on the region, ``side = max(min_side, round(scale * radius))``, padded with black beyond the image's
edge so the mass stays centred. `mammo-data import-mias` cuts its training crops with the same `crop_region`, and the
bundle's manifest carries the rule its training data was cut with, so training and the device agree on what a region
is, byte for byte.

Regions arrive beside a scan as ``NAME.roi.json`` (``{"regions": [{"label": "A", "x": 535, "y": 425, "radius":
197}, {"label": "B", "box": [100, 200, 260, 380]}]}``) or as a binary mask ``NAME.mask.png`` of the scan's size, each
connected component one region. Every problem with a sidecar is a `RegionError` naming the region and the rule broken.
"""

from __future__ import annotations

import json
import math
import string
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_app.decode import Gray8, decode_bytes
from edge_app.errors import InputImageError, RegionError
from edge_app.strict import checked_fields

ROI_SUFFIX = ".roi.json"
MASK_SUFFIX = ".mask.png"
SEG_SUFFIX = ".seg.dcm"
SR_SUFFIX = ".sr.dcm"
SIDECAR_KINDS = {ROI_SUFFIX: "roi", MASK_SUFFIX: "mask", SEG_SUFFIX: "seg", SR_SUFFIX: "sr"}
SIDECAR_SUFFIXES = tuple(SIDECAR_KINDS)
MAX_REGIONS = 16
"""More marked regions than this on one view is not a radiologist's annotation; refuse it rather than run 100 crops."""
MAX_ROI_BYTES = 64 * 1024
"""Far more than MAX_REGIONS regions need; a bigger `.roi.json` is refused before it is parsed."""


@dataclass(frozen=True)
class Box:
    """A pixel rectangle, ``x0 <= x < x1``, ``y0 <= y < y1`` (it may reach beyond the image: a padded crop)."""

    x0: int
    y0: int
    x1: int
    y1: int

    def as_list(self) -> list[int]:
        return [self.x0, self.y0, self.x1, self.y1]


@dataclass(frozen=True)
class Region:
    """One region of interest: its label, its centre and the radius of a circle enclosing the abnormality (pixels),
    the box it was marked with, if it was marked as a box (or is a mask component or the bounds of a polygon or an
    ellipse), and the shape a viewer drew when it was neither a circle nor a box (``point``, ``ellipse``,
    ``polygon``)."""

    label: str
    cx: float
    cy: float
    radius: float
    box: Box | None = None
    shape: str | None = None

    @classmethod
    def from_box(cls, label: str, box: Box) -> Region:
        """A box's region: its centre, and half its longer side (the circle of its enclosing square)."""
        side = max(box.x1 - box.x0, box.y1 - box.y0)
        return cls(label, (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2, side / 2, box)

    def bounds(self, width: int, height: int) -> Box:
        """The region as marked, clipped to a `width` x `height` image: its box, or its circle's bounding box."""
        if self.box is not None:
            return Box(max(0, self.box.x0), max(0, self.box.y0), min(width, self.box.x1), min(height, self.box.y1))
        return Box(
            max(0, round(self.cx - self.radius)),
            max(0, round(self.cy - self.radius)),
            min(width, round(self.cx + self.radius)),
            min(height, round(self.cy + self.radius)),
        )


@dataclass(frozen=True)
class CropRule:
    """How much context around a region the model was trained with: ``side = max(min_side, round(scale * radius))``.

    The defaults are the MIAS and Mendeley convention (about twice the radius, at least 64 px)."""

    scale: float = 2.0
    min_side: int = 64

    def __post_init__(self) -> None:
        if not self.scale > 0 or self.min_side < 1:
            raise InputImageError(f"a crop rule needs scale > 0 and min_side >= 1, got {self.scale}, {self.min_side}")

    def window(self, region: Region) -> Box:
        """The square the rule cuts around `region` (rounding halves up, so a centre of 10.5 is pixel 11)."""
        side = max(self.min_side, round(self.scale * region.radius))
        left = math.floor(region.cx + 0.5) - side // 2
        top = math.floor(region.cy + 0.5) - side // 2
        return Box(left, top, left + side, top + side)


def crop_region(gray: Gray8, region: Region, rule: CropRule) -> tuple[Gray8, Box]:
    """The rule's square around `region` and where it lies in the image; beyond the edge is black."""
    window = rule.window(region)
    height, width = gray.shape
    crop = np.zeros((window.y1 - window.y0, window.x1 - window.x0), np.uint8)
    x0, y0 = max(window.x0, 0), max(window.y0, 0)
    x1, y1 = min(window.x1, width), min(window.y1, height)
    if x1 > x0 and y1 > y0:
        crop[y0 - window.y0 : y1 - window.y0, x0 - window.x0 : x1 - window.x0] = gray[y0:y1, x0:x1]
    return crop, window


def whole_image(gray: Gray8) -> tuple[Region, Box]:
    """A plain patch input is one region covering the whole image."""
    height, width = gray.shape
    return Region("A", width / 2, height / 2, max(width, height) / 2), Box(0, 0, width, height)


def sidecar_suffix(name: str) -> str | None:
    """The sidecar suffix a file name ends with, in its canonical spelling (``.roi.json``), None for anything else."""
    lowered = name.lower()
    return next((suffix for suffix in SIDECAR_SUFFIXES if lowered.endswith(suffix)), None)


def sidecar_kind(name: str) -> str | None:
    """``roi``, ``mask``, ``seg`` (a DICOM Segmentation) or ``sr`` (a DICOM measurement report) for a sidecar's file
    name, None for anything else."""
    suffix = sidecar_suffix(name)
    return None if suffix is None else SIDECAR_KINDS[suffix]


def sidecar_names(scan_name: str) -> tuple[str, ...]:
    """The names a sidecar of `scan_name` (a relative posix path) may have: ``NAME.roi.json``, ``NAME.mask.png``,
    ``NAME.seg.dcm``, ``NAME.sr.dcm``."""
    path = PurePosixPath(scan_name)
    base = path.with_suffix("") if path.suffix else path
    return tuple(f"{base}{suffix}" for suffix in SIDECAR_SUFFIXES)


@dataclass(frozen=True)
class _CircleSpec:
    x: float
    y: float
    radius: float
    label: str = ""


@dataclass(frozen=True)
class _BoxSpec:
    box: list[float]
    label: str = ""


def parse_sidecar(kind: str, data: bytes, width: int, height: int) -> list[Region]:
    """The regions a ``roi`` or ``mask`` sidecar marks on a `width` x `height` scan; RegionError says what is wrong.
    (A DICOM sidecar names the image it marks: `edge_app.dicomregions` reads those.)"""
    regions = _roi_regions(data, width, height) if kind == "roi" else mask_regions(_mask(data), width, height)
    return checked_count(regions)


def checked_count(regions: list[Region]) -> list[Region]:
    if len(regions) > MAX_REGIONS:
        raise RegionError(f"the sidecar marks {len(regions)} regions; at most {MAX_REGIONS} per scan")
    return regions


def check_inside(region: Region, width: int, height: int) -> Region:
    """`region`, if its centre lies on the `width` x `height` image; RegionError naming it otherwise."""
    if not (0 <= region.cx < width and 0 <= region.cy < height):
        raise RegionError(
            f"region {region.label!r}: centre ({region.cx:g}, {region.cy:g}) lies outside the {width}x{height} image"
        )
    return region


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RegionError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _roi_regions(data: bytes, width: int, height: int) -> list[Region]:
    if len(data) > MAX_ROI_BYTES:
        raise RegionError(
            f"the .roi.json sidecar is {len(data):,} bytes; at most {MAX_ROI_BYTES:,} ({MAX_REGIONS} regions)"
        )
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegionError(f"the .roi.json sidecar is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise RegionError("the .roi.json sidecar nests deeper than any region file does") from exc
    top = checked_fields(_RoiDocument, document, ".roi.json", RegionError)
    entries = top["regions"]
    if not isinstance(entries, list) or not entries:
        raise RegionError('the .roi.json sidecar must hold a non-empty list "regions"')
    regions: list[Region] = []
    for index, entry in enumerate(entries):
        where = f"region {index + 1}"
        if not isinstance(entry, dict):
            raise RegionError(f"{where} must be an object with x, y, radius or with box")
        shape = _BoxSpec if "box" in entry else _CircleSpec
        fields_ = checked_fields(shape, entry, where, RegionError)
        label = str(fields_.get("label") or default_label(index))
        where = f"region {label!r}"
        if shape is _BoxSpec:
            box = fields_["box"]
            if not isinstance(box, list) or len(box) != 4:
                raise RegionError(f"{where}: box must be [x0, y0, x1, y1]")
            x0, y0, x1, y1 = (_number(value, f"{where} box") for value in box)
            if not (x1 > x0 and y1 > y0):
                raise RegionError(f"{where}: box {box} is empty or reversed (needs x0 < x1 and y0 < y1)")
            if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                raise RegionError(f"{where}: box {box} lies outside the {width}x{height} image")
            regions.append(Region.from_box(label, Box(round(x0), round(y0), round(x1), round(y1))))
        else:
            x, y = _number(fields_["x"], f"{where} x"), _number(fields_["y"], f"{where} y")
            radius = _number(fields_["radius"], f"{where} radius")
            if radius <= 0:
                raise RegionError(f"{where}: radius must be > 0, got {radius:g}")
            regions.append(check_inside(Region(label, x, y, radius), width, height))
    labels = [region.label for region in regions]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise RegionError(f"region labels must be unique; repeated: {', '.join(repeated)}")
    return regions


@dataclass(frozen=True)
class _RoiDocument:
    regions: list[Any]


def _mask(data: bytes) -> NDArray[np.bool_]:
    try:
        return np.asarray(decode_bytes(data).pixels > 0)
    except InputImageError as exc:
        raise RegionError(f"the .mask.png sidecar marks no region (or cannot be read): {exc}") from exc


def mask_regions(mask: NDArray[np.bool_], width: int, height: int, what: str = "the .mask.png sidecar") -> list[Region]:
    """Each connected component of a `width` x `height` mask is one region (its bounding box)."""
    if mask.shape != (height, width):
        raise RegionError(
            f"{what} is {mask.shape[1]}x{mask.shape[0]}, the scan {width}x{height}: a mask must be the scan's size"
        )
    if not mask.any():
        raise RegionError(f"{what} marks no pixel")
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    regions = []
    for index in range(1, count):
        left, top, box_width, box_height = (int(value) for value in stats[index, :4])
        box = Box(left, top, left + box_width, top + box_height)
        regions.append(Region.from_box(default_label(index - 1), box))
    return regions


def default_label(index: int) -> str:
    """A, B, ..., Z, R27, R28...: how regions without a label are named."""
    return string.ascii_uppercase[index] if index < 26 else f"R{index + 1}"
