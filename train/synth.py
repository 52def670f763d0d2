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

from train.layout import CLASS_FOLDERS, write_sidecar

FloatImage = NDArray[np.float32]


@dataclass(frozen=True)
class SynthSpec:
    per_class: int = 150
    size: int = 227
    seed: int = 0
    copies: int = 1
    sources: tuple[str, ...] = ("SYNTH",)


@dataclass(frozen=True)
class Mass:
    """A rendered crop, the mask of its mass body and the mask of the whole lesion (body and spicules)."""

    image: NDArray[np.uint8]
    body: NDArray[np.bool_]
    lesion: NDArray[np.bool_]


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> FloatImage:
    noise = rng.standard_normal((size, size)).astype(np.float32)
    blurred = np.asarray(cv2.GaussianBlur(noise, (0, 0), sigma), dtype=np.float32)
    normalised: FloatImage = (blurred - blurred.mean()) / np.float32(blurred.std() + 1e-6)
    return normalised


def _background(rng: np.random.Generator, size: int) -> FloatImage:
    """Fibroglandular texture: multi-scale smooth noise plus faint curvilinear strands (ducts, ligaments)."""
    texture = 0.6 * _smooth_noise(rng, size, size / 10) + 0.3 * _smooth_noise(rng, size, size / 30)
    image = 0.38 + rng.uniform(-0.06, 0.06) + 0.07 * texture
    strands = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(4, 10))):
        points = [rng.uniform(0, size, 2)]
        heading = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(4, 9))):
            heading += rng.normal(0, 0.35)
            points.append(points[-1] + size / 8 * np.array([np.cos(heading), np.sin(heading)]))
        polyline = np.round(np.array(points)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(strands, [polyline], False, float(rng.uniform(0.03, 0.08)), 1, cv2.LINE_AA)
    return np.asarray(image + cv2.GaussianBlur(strands, (0, 0), 0.8), dtype=np.float32)


def _radial_outline(rng: np.random.Generator, radius: float, malignant: bool) -> NDArray[np.float64]:
    """Boundary radius as a function of angle (720 samples): an ellipse, or an irregular lobulated margin."""
    angles = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    # Both shapes reach out to radius * (1 + elongation / 2), so the enclosing size does not tell the class.
    elongation = rng.uniform(0.0, 0.3)
    if malignant:
        outline = np.ones_like(angles)
        for harmonic in range(3, 10):
            outline += rng.uniform(0.02, 0.07) * np.cos(harmonic * angles + rng.uniform(0, 2 * np.pi))
        return np.asarray(radius * (1 + elongation / 2) * outline / outline.max(), dtype=np.float64)
    tilt = rng.uniform(0, np.pi)
    semi_a, semi_b = radius * (1 + elongation / 2), radius * (1 - elongation / 2)
    theta = angles - tilt
    return semi_a * semi_b / np.sqrt((semi_b * np.cos(theta)) ** 2 + (semi_a * np.sin(theta)) ** 2)


def render_mass(rng: np.random.Generator, size: int, malignant: bool) -> Mass:
    """One original crop; size and contrast share one distribution across classes."""
    image = _background(rng, size)
    radius = size * rng.uniform(0.11, 0.2)
    centre = size / 2 + rng.uniform(-0.08, 0.08, 2) * size
    contrast = rng.uniform(0.14, 0.26)
    outline = _radial_outline(rng, radius, malignant)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    dx, dy = cols - centre[0], rows - centre[1]
    distance = np.hypot(dx, dy)
    index = ((np.arctan2(dy, dx) % (2 * np.pi)) / (2 * np.pi) * len(outline)).astype(int) % len(outline)
    boundary = outline[index]
    edge_width = rng.uniform(2.5, 4.0) if malignant else rng.uniform(0.6, 1.2)
    body = 1.0 / (1.0 + np.exp((distance - boundary) / edge_width))
    # A dense core, fading towards the margin, as masses look on film.
    profile = body * (0.75 + 0.25 * np.clip(1 - distance / (boundary + 1e-6), 0, 1))
    mass = profile.astype(np.float32)
    body_mask = distance <= boundary
    spicules = np.zeros((size, size), np.float32)
    if malignant:
        for angle in rng.uniform(0, 2 * np.pi, int(rng.integers(8, 16))):
            start_r = outline[int(angle / (2 * np.pi) * len(outline)) % len(outline)] * 0.85
            length = radius * rng.uniform(0.5, 1.1)
            direction = np.array([np.cos(angle), np.sin(angle)])
            start = centre + start_r * direction
            end = start + length * direction
            cv2.line(
                spicules,
                tuple(np.round(start).astype(int)),
                tuple(np.round(end).astype(int)),
                float(rng.uniform(0.3, 0.6)),
                int(rng.integers(1, 3)),
                cv2.LINE_AA,
            )
        mass = np.maximum(mass, cv2.GaussianBlur(spicules, (0, 0), 0.7))
    # Equal integrated brightness for a given radius, whatever the margin: no total-intensity shortcut.
    mass *= np.float32(0.8 * np.pi * radius**2 / mass.sum())
    image = image + contrast * mass
    image = image + rng.normal(0, 0.015, image.shape).astype(np.float32)
    gamma = rng.uniform(0.85, 1.15)
    pixels = np.rint(np.clip(image, 0, 1) ** gamma * 255).astype(np.uint8)
    return Mass(image=pixels, body=body_mask, lesion=body_mask | (spicules > 0))


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
        counts[source] = len(rows)
    return counts
