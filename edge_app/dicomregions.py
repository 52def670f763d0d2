"""Regions from the DICOM objects a reader's viewer or a segmentation tool sends with a film: a measurement report's
spatial coordinates (SR, TID 1500) and a Segmentation's masks (SEG).

Both name the images they mark by SOP Instance UID. The DICOM listener stores each as the sidecar of every image it
references (``<image UID>.sr.dcm``, ``<image UID>.seg.dcm``), a user may drop one as ``NAME.sr.dcm`` beside
``NAME.dcm``, and the analyse stage reads from it only the regions that reference the scan's own SOP Instance UID.

A report's regions are its SCOORD content items whose IMAGE child references the scan, wherever they sit in the
content tree: as a measurement group's "Image Region" (TID 1410, highdicom's own layout) or under a measurement
value (TID 300, as OHIF and other web viewers export them; highdicom's TID 1500 reader finds only the first). A
viewer that repeats one outline under several measurements (area, mean, maximum...) marks one region. Shapes, in
PS3.3 C.18.6.1.2's image coordinates (the top left pixel's centre is 0.5, 0.5):

- ``POINT``: a circle of the crop rule's smallest radius about it (its crop is the rule's smallest square);
- ``CIRCLE``: the centre and a point on the circle;
- ``ELLIPSE``: both axes' end points; the circle enclosing it, with the ellipse's bounds as its box;
- ``POLYLINE`` closed (last point = first): its bounding box. An open polyline (a ruler) is not a region.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from edge_app.errors import RegionError
from edge_app.regions import Box, Region, check_inside, checked_count, default_label, mask_regions

SR_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR (its 2-D SCOORDs)
)
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
_PIXEL_CENTRE = 0.5  # DICOM image coordinates put the top left pixel's centre at (0.5, 0.5); regions at (0, 0)


def read_dataset(data: bytes, what: str) -> Dataset:
    try:
        return pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise RegionError(f"the {what} cannot be read as DICOM: {exc}".splitlines()[0]) from exc


def _content(items: Any) -> Iterator[Dataset]:
    """Every content item of an SR content tree, depth first."""
    for item in items or []:
        yield item
        yield from _content(item.get("ContentSequence"))


def _image_uids(item: Dataset) -> list[str]:
    return [
        str(reference.ReferencedSOPInstanceUID)
        for child in item.get("ContentSequence") or []
        if child.get("ValueType") == "IMAGE"
        for reference in child.get("ReferencedSOPSequence") or []
        if "ReferencedSOPInstanceUID" in reference
    ]


def _scoords(report: Dataset) -> Iterator[tuple[str, tuple[float, ...], list[str]]]:
    """(graphic type, graphic data, referenced image UIDs) of every image SCOORD in the report."""
    for item in _content(report.get("ContentSequence")):
        if item.get("ValueType") == "SCOORD":
            data = tuple(float(value) for value in item.get("GraphicData") or [])
            yield str(item.get("GraphicType", "")).upper(), data, _image_uids(item)


def sr_images(data: bytes) -> set[str]:
    """The images a measurement report marks (the listener names its sidecars after them)."""
    report = read_dataset(data, "measurement report")
    return {uid for _, _, uids in _scoords(report) for uid in uids}


def _shape(label: str, kind: str, points: NDArray[np.float64], point_radius: float) -> Region | None:
    """One SCOORD as a region (pixel-index coordinates), or None for what is not a region (an open polyline)."""
    where = f"region {label!r} ({kind})"
    if kind == "POINT" and len(points) == 1:
        return Region(label, float(points[0, 0]), float(points[0, 1]), point_radius, shape="point")
    if kind == "CIRCLE" and len(points) == 2:
        radius = float(np.hypot(*(points[1] - points[0])))
        if radius <= 0:
            raise RegionError(f"{where}: the circle has no radius")
        return Region(label, float(points[0, 0]), float(points[0, 1]), radius)
    if kind == "ELLIPSE" and len(points) == 4:
        centre = points[:2].mean(axis=0)
        semi_major = float(np.hypot(*(points[1] - points[0]))) / 2
        semi_minor = float(np.hypot(*(points[3] - points[2]))) / 2
        if min(semi_major, semi_minor) <= 0:
            raise RegionError(f"{where}: an axis of the ellipse has no length")
        angle = math.atan2(points[1, 1] - points[0, 1], points[1, 0] - points[0, 0])
        half_width = math.hypot(semi_major * math.cos(angle), semi_minor * math.sin(angle))
        half_height = math.hypot(semi_major * math.sin(angle), semi_minor * math.cos(angle))
        box = _box(centre[0] - half_width, centre[1] - half_height, centre[0] + half_width, centre[1] + half_height)
        return Region(label, float(centre[0]), float(centre[1]), max(semi_major, semi_minor), box, "ellipse")
    if kind == "POLYLINE" and len(points) >= 4 and np.allclose(points[0], points[-1]):
        low, high = points.min(axis=0), points.max(axis=0)
        if not np.all(high > low):
            raise RegionError(f"{where}: the outline encloses no area")
        box = _box(low[0], low[1], high[0], high[1])
        centre_x, centre_y = (float(value) for value in (low + high) / 2)
        return Region(label, centre_x, centre_y, float(max(high - low)) / 2, box, "polygon")
    if kind == "POLYLINE":
        return None
    raise RegionError(f"{where}: {len(points)} point(s) do not make a {kind} this device reads")


def _box(x0: float, y0: float, x1: float, y1: float) -> Box:
    return Box(math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1))


def sr_regions(data: bytes, image_uid: str, width: int, height: int, point_radius: float) -> list[Region]:
    """The regions a measurement report marks on the `width` x `height` image `image_uid`; RegionError says what is
    wrong (a report that marks only other images, or nothing that is a region)."""
    report = read_dataset(data, "measurement report")
    if str(report.get("SOPClassUID", "")) not in SR_CLASSES:
        raise RegionError("the .sr.dcm sidecar is not an Enhanced or Comprehensive SR measurement report")
    found = list(_scoords(report))
    outlines = list(dict.fromkeys((kind, values) for kind, values, uids in found if image_uid in uids))
    if not outlines:
        others = sorted({uid for _, _, uids in found for uid in uids})
        raise RegionError(
            "the measurement report marks no region on this image"
            + (f" (it marks {len(others)} other image(s))" if others else " (it has no image coordinates)")
        )
    regions: list[Region] = []
    for kind, values in outlines:
        if len(values) % 2:
            raise RegionError(f"a {kind} has an odd number of coordinates ({len(values)})")
        points = np.array(values, np.float64).reshape(-1, 2) - _PIXEL_CENTRE
        region = _shape(default_label(len(regions)), kind, points, point_radius)
        if region is not None:
            regions.append(check_inside(region, width, height))
    if not regions:
        raise RegionError("the measurement report marks only open lines (rulers) on this image, no region")
    return checked_count(regions)


def segmentation_masks(dataset: Dataset) -> dict[str, NDArray[np.bool_]]:
    """Each referenced image's mask: the union of the Segmentation's frames derived from it (every segment), read
    with pydicom (highdicom's reader wants a slice thickness that 2-D projection images do not have)."""
    frames = np.asarray(dataset.pixel_array)
    if frames.ndim == 2:
        frames = frames[np.newaxis]
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence") or []
    masks: dict[str, NDArray[np.bool_]] = {}
    for index, frame in enumerate(frames):
        sources = [
            str(source.ReferencedSOPInstanceUID)
            for derivation in (per_frame[index].get("DerivationImageSequence") or [] if index < len(per_frame) else [])
            for source in derivation.get("SourceImageSequence") or []
        ]
        if not sources:
            referenced = [
                str(instance.ReferencedSOPInstanceUID)
                for series in dataset.get("ReferencedSeriesSequence") or []
                for instance in series.get("ReferencedInstanceSequence") or []
            ]
            if len(referenced) != 1:
                raise ValueError(f"frame {index + 1} does not say which image it segments")
            sources = referenced
        for image_uid in sources:
            masks[image_uid] = masks.get(image_uid, np.zeros(frame.shape, bool)) | (frame > 0)
    return masks


def seg_images(data: bytes) -> set[str]:
    """The images a Segmentation marks (the listener names its sidecars after them)."""
    return set(segmentation_masks(read_dataset(data, "segmentation")))


def seg_regions(data: bytes, image_uid: str, width: int, height: int) -> list[Region]:
    """Each connected component of the Segmentation's mask of image `image_uid` is one region."""
    dataset = read_dataset(data, "segmentation")
    try:
        masks = segmentation_masks(dataset)
    except (AttributeError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise RegionError(f"the segmentation cannot be read: {exc}".splitlines()[0]) from exc
    if image_uid not in masks:
        raise RegionError(f"the segmentation marks no region on this image (it marks {len(masks)} other image(s))")
    return checked_count(mask_regions(masks[image_uid], width, height, "the segmentation's mask"))
