"""A synthetic mass-crop dataset in the Mendeley layout, for tests, the demo and recipe benchmarks.

Benign masses are round or oval and circumscribed; malignant masses have an irregular, blurred margin with
spicules radiating from it. Both sit on the same kind of textured fibroglandular background with linear strands and
noise, and both draw their size and contrast from the same distributions, so neither brightness nor size gives the
class away: a model has to learn margin shape. Deterministic per seed; every original has ``copies`` augmented
copies named ``NAME (n).png`` (dihedral transform + zoom, never the identity), like the real set. Each source
folder gets a ``masses.csv`` with every image's mass centre and radius (pixels, after its augmentation) and a
patient id, so explanations can be checked against the truth and splits can be made by patient. The radius follows
MIAS's truth (the one real ground truth the project reads): a circle about the centre enclosing the whole
abnormality, spicules included; ``body_radius`` encloses the mass body alone (the synthetic set alone knows it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_app.regions import CropRule
from edge_app.samples import Mass, render_mass
from mammo_train.layout import CLASS_FOLDERS, write_crop_rule, write_sidecar


@dataclass(frozen=True)
class SynthSpec:
    per_class: int = 150
    size: int = 227
    seed: int = 0
    copies: int = 1
    sources: tuple[str, ...] = ("SYNTH",)


_DIHEDRAL = tuple((rotations, flip) for flip in (False, True) for rotations in range(4))[1:]
"""The seven non-identity symmetries of the square: a copy is never pixel-identical to its original."""


def augment(plane: NDArray[np.uint8], transform: int, zoom: float, interpolation: int) -> NDArray[np.uint8]:
    """Apply one of the seven non-identity dihedral transforms, then a centred zoom (>= 1)."""
    rotations, flip = _DIHEDRAL[transform % len(_DIHEDRAL)]
    turned = np.rot90(plane, rotations)
    if flip:
        turned = np.fliplr(turned)
    size = plane.shape[0]
    crop = round(size / zoom)
    offset = (size - crop) // 2
    window = np.ascontiguousarray(turned[offset : offset + crop, offset : offset + crop])
    return np.asarray(cv2.resize(window, (size, size), interpolation=interpolation), dtype=np.uint8)


def augment_mass(mass: Mass, transform: int, zoom: float) -> Mass:
    """The same augmentation on a crop and on its masks, so the recorded geometry follows the pixels."""

    def augment_mask(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
        return augment(mask.astype(np.uint8), transform, zoom, cv2.INTER_NEAREST).astype(bool)

    image = augment(mass.image, transform, zoom, cv2.INTER_LINEAR)
    return Mass(image=image, body=augment_mask(mass.body), lesion=augment_mask(mass.lesion))


@dataclass(frozen=True)
class MassGeometry:
    """Centre of the mass body and the radii of the circles about it enclosing the lesion and the body (pixels)."""

    cx: float
    cy: float
    radius: float
    body_radius: float


def mass_geometry(mass: Mass) -> MassGeometry:
    """The body's centroid is the centre (where a reader marks a mass); both circles are drawn about it."""
    rows, cols = np.nonzero(mass.body)
    cx, cy = float(cols.mean()), float(rows.mean())

    def enclosing_radius(mask: NDArray[np.bool_]) -> float:
        mask_rows, mask_cols = np.nonzero(mask)
        return float(np.sqrt(((mask_cols - cx) ** 2 + (mask_rows - cy) ** 2).max()))

    return MassGeometry(cx, cy, enclosing_radius(mass.lesion), enclosing_radius(mass.body))


def synth_crop_rule(size: int, radii: list[float]) -> CropRule:
    """The crop rule the synthetic crops amount to: a crop is `size` wide around a mass of the given radius, so the
    rule's scale is the median of ``size / radius`` (about 4.7: more context than the MIAS rule's 2) and its
    minimum side half the crop. A synthetic full-field film marks its masses by their radius, and this rule cuts them
    out at the scale the model learned."""
    return CropRule(round(float(np.median([size / radius for radius in radii])), 2), size // 2)


def generate(out: Path, spec: SynthSpec) -> dict[str, int]:
    """Write the dataset under `out`; returns image counts per source."""
    counts: dict[str, int] = {}
    for source_index, source in enumerate(spec.sources):
        rng = np.random.default_rng([spec.seed, source_index])
        source_dir = Path(out) / f"{source} Dataset"
        labels = np.repeat([0, 1], spec.per_class)
        # Patients hold one or two masses of either class, as real patients do.
        patients = rng.permutation(len(labels)) // 2
        rows: list[dict[str, object]] = []
        for index, label in enumerate(labels):
            original = f"{source[:3]}{index:05d}"
            folder = source_dir / CLASS_FOLDERS[label]
            folder.mkdir(parents=True, exist_ok=True)
            mass = render_mass(rng, spec.size, bool(label))
            variants = [(original, mass)]
            transforms = rng.permutation(len(_DIHEDRAL))
            for copy in range(1, spec.copies + 1):
                zoom = float(rng.uniform(1.0, 1.15))
                variants.append(
                    (f"{original} ({copy})", augment_mass(mass, int(transforms[(copy - 1) % len(_DIHEDRAL)]), zoom))
                )
            for name, variant in variants:
                file = folder / f"{name}.png"
                cv2.imwrite(str(file), variant.image)
                geometry = mass_geometry(variant)
                rows.append(
                    {
                        "file": file.relative_to(source_dir).as_posix(),
                        "original": original,
                        "label": label,
                        "patient": f"{source}-P{int(patients[index]):05d}",
                        "cx": round(geometry.cx, 2),
                        "cy": round(geometry.cy, 2),
                        "radius": round(geometry.radius, 2),
                        "body_radius": round(geometry.body_radius, 2),
                    }
                )
        write_sidecar(source_dir, rows)
        write_crop_rule(source_dir, synth_crop_rule(spec.size, [float(str(row["radius"])) for row in rows]), None)
        counts[source] = len(rows)
    return counts
