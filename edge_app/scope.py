"""The scope guard: a scan without regions is classified only if it looks like what the model was trained on.

The model was trained on mass patches a few centimetres across. A full-field mammogram (thousands of pixels, a whole
breast) shrunk to the model input is a question the model never saw, and its answer would be confident nonsense; so
such an input is never classified. It gets the status ``needs_roi``, its measured size and a reason that says how to
supply a region. The bundle's manifest records the training patches' sides (pixels and, where the data said,
millimetres) as a `TrainingScope`; the device's limits default to a factor of `TOLERANCE` around that range and can be
set in ``[scope]`` of the config.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from edge_app.decode import DecodedImage
from edge_app.errors import BundleError
from edge_app.regions import ROI_SUFFIX, CropRule
from edge_app.strict import checked_fields

TOLERANCE = 2.0
""""Far outside" the trained range: over twice the largest training patch, or under half the smallest."""


@dataclass(frozen=True)
class TrainingScope:
    """What the training patches were: the crop rule they were cut with and the range of their sides."""

    crop_scale: float = CropRule.scale
    crop_min_side: int = CropRule.min_side
    patch_side_px: tuple[int, int] = (64, 512)
    patch_side_mm: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        low, high = self.patch_side_px
        if not 0 < low <= high:
            raise BundleError(f"scope patch_side_px must be 0 < min <= max, got {list(self.patch_side_px)}")
        if self.patch_side_mm is not None and not 0 < self.patch_side_mm[0] <= self.patch_side_mm[1]:
            raise BundleError(f"scope patch_side_mm must be 0 < min <= max, got {list(self.patch_side_mm)}")

    @property
    def crop_rule(self) -> CropRule:
        return CropRule(self.crop_scale, self.crop_min_side)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Any) -> TrainingScope:
        checked = checked_fields(cls, values, "manifest scope", BundleError)
        try:
            px = tuple(int(v) for v in checked.get("patch_side_px", cls.patch_side_px))
            mm = checked.get("patch_side_mm")
            return cls(
                crop_scale=float(checked.get("crop_scale", cls.crop_scale)),
                crop_min_side=int(checked.get("crop_min_side", cls.crop_min_side)),
                patch_side_px=(px[0], px[1]),
                patch_side_mm=None if mm is None else (float(mm[0]), float(mm[1])),
            )
        except (TypeError, ValueError, IndexError) as exc:
            raise BundleError(f"manifest scope is invalid: {exc}") from exc


@dataclass(frozen=True)
class ScopeLimits:
    """The sizes a scan without regions may have to be classified whole."""

    min_side_px: int
    max_side_px: int
    max_extent_mm: float | None

    @classmethod
    def resolve(
        cls, scope: TrainingScope, min_side_px: int = 0, max_side_px: int = 0, max_extent_mm: float = 0.0
    ) -> ScopeLimits:
        """Configured limits, each 0 meaning: derive it from the training scope."""
        low, high = scope.patch_side_px
        derived_mm = None if scope.patch_side_mm is None else TOLERANCE * scope.patch_side_mm[1]
        return cls(
            min_side_px=min_side_px or max(1, math.floor(low / TOLERANCE)),
            max_side_px=max_side_px or math.ceil(high * TOLERANCE),
            max_extent_mm=max_extent_mm or derived_mm,
        )

    def describe(self) -> str:
        extent = f", at most {self.max_extent_mm:g} mm" if self.max_extent_mm else ""
        return f"{self.min_side_px}..{self.max_side_px} px a side{extent}"


@dataclass(frozen=True)
class Measured:
    """What the guard measured of a scan: its pixels and, where the header says, its physical extent."""

    width_px: int
    height_px: int
    extent_mm: tuple[float, float] | None  # (width, height)

    @classmethod
    def of(cls, image: DecodedImage) -> Measured:
        height, width = image.pixels.shape
        spacing = image.pixel_spacing_mm
        extent = None if spacing is None else (round(width * spacing[1], 1), round(height * spacing[0], 1))
        return cls(width, height, extent)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def needs_roi_reason(measured: Measured, limits: ScopeLimits, scan_name: str = "NAME") -> str | None:
    """Why a scan without regions must not be classified whole, or None if it is a patch like the training ones."""
    longer, shorter = max(measured.width_px, measured.height_px), min(measured.width_px, measured.height_px)
    size = f"{measured.width_px}x{measured.height_px} px"
    if measured.extent_mm is not None:
        size += f" ({measured.extent_mm[0]:g} x {measured.extent_mm[1]:g} mm)"
    problem = None
    if longer > limits.max_side_px:
        problem = "larger than"
    elif shorter < limits.min_side_px:
        problem = "smaller than"
    elif (
        limits.max_extent_mm is not None
        and measured.extent_mm is not None
        and max(measured.extent_mm) > limits.max_extent_mm
    ):
        problem = "physically larger than"
    if problem is None:
        return None
    stem = scan_name.rsplit(".", 1)[0] if "." in scan_name else scan_name
    return (
        f"the image is {size}, {problem} the mass patches this model was trained on ({limits.describe()}), and the "
        "model answers only for such patches, never for a whole film. Mark the masses to classify: on the film in "
        "the device's web app (Films waiting for a region), in your viewer (a DICOM measurement report sent with the "
        f"film), or drop {stem}{ROI_SUFFIX} "
        '({"regions": [{"label": "A", "x": ..., "y": ..., "radius": ...}]}) or a mask beside the scan and submit '
        "it again"
    )
