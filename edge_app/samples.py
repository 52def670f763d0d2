"""Sample scans made on the device itself: synthetic mass crops for benchmarks, self-tests and the synthetic dataset.

Benign masses are round or oval and circumscribed; malignant masses have an irregular, blurred margin with spicules
radiating from it. Both sit on the same textured fibroglandular background and draw their size and contrast from the
same distributions, so a model has to learn margin shape. numpy and OpenCV only: the device benchmarks need no
training code, and `mammo_train.synth` builds its dataset from the same `render_mass`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

FloatImage = NDArray[np.float32]


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
