"""The detector's training data and settings: full-field films with their masses, the canvases the device will see
(`edge_app.detect.frame_film`, the one rule), the centre-heatmap targets, augmentation, and folds by patient.

Sources: the synthetic films of ``mammo-data synth --films`` (their ``.roi.json`` truth and DICOM pixel spacing; each
film is its own patient) and the MIAS films with ``Info.txt`` (200 micron pixels; films 1+2, 3+4, ... are one
patient; a mass row without a centre makes its film unusable, since a candidate on that mass could be neither a hit
nor a false positive). A film with no mass is kept: it teaches and measures false positives.

Targets, per heatmap cell of `DetectorInput.stride` canvas pixels: a Gaussian bump at each mass centre (sigma a
third of the mass's radius, at least half a cell), exactly 1 at the cell holding the centre, as CenterNet trains;
and the log of the mass's radius (canvas pixels) at that cell, where the size head is trained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_app.decode import decode_file
from edge_app.detect import DetectorInput, FilmFrame, cell_of, frame_film
from edge_app.errors import DataError
from edge_app.regions import ROI_SUFFIX, Region, parse_sidecar
from mammo_train.mias import MIAS_PIXEL_SPACING_MM, mass_region, parse_info

SCALE_JITTER = (0.85, 1.15)
SHIFT_PX = 24
GAMMA = (0.7, 1.4)


@dataclass(frozen=True)
class DetectorSettings:
    epochs: int = 100
    batch_size: int = 8
    learning_rate: float = 2e-3
    seed: int = 0
    max_candidates: int = 20  # per film when measuring: enough to reach 4 false positives per film
    min_score: float = 0.01

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class FilmTruth:
    """A film, its patient, its pixel spacing and its masses (film pixels; none on a normal film)."""

    path: Path
    patient: str
    spacing_mm: float
    masses: tuple[Region, ...]
    source: str  # "mias" | "synthetic"


@dataclass(frozen=True)
class Canvas:
    """A film as the detector sees it, and its masses on the canvas."""

    truth: FilmTruth
    pixels: NDArray[np.uint8]
    frame: FilmFrame
    masses: tuple[Region, ...]


def mias_films(folder: Path) -> tuple[list[FilmTruth], dict[str, str]]:
    """The MIAS films present in `folder` that a detector can learn from, and those left out with the reason."""
    rows = [row for row in parse_info(folder / "Info.txt") if (folder / f"{row.ref}.pgm").is_file()]
    if not rows:
        raise DataError(f"no MIAS film of Info.txt is in {folder}")
    films: list[FilmTruth] = []
    left_out: dict[str, str] = {}
    for ref in sorted({row.ref for row in rows}):
        film_rows = [row for row in rows if row.ref == ref]
        masses = [row for row in film_rows if row.is_mass]
        other = [row.abnormality for row in film_rows if not row.is_mass and row.abnormality != "NORM"]
        if other:
            left_out[ref] = f"an abnormality other than a mass ({', '.join(other)})"
            continue
        if any(row.x is None for row in masses):
            left_out[ref] = "a mass without a centre and radius in Info.txt"
            continue
        height = decode_file(folder / f"{ref}.pgm").pixels.shape[0]
        regions = tuple(mass_region(row, height) for row in masses)
        films.append(FilmTruth(folder / f"{ref}.pgm", film_rows[0].patient, MIAS_PIXEL_SPACING_MM, regions, "mias"))
    return films, left_out


def synthetic_films(folder: Path) -> list[FilmTruth]:
    """The films of ``mammo-data synth --films`` in `folder`, their truth from each ``.roi.json``."""
    films = []
    for path in sorted(folder.glob("*.dcm")):
        image = decode_file(path)
        if image.pixel_spacing_mm is None:
            raise DataError(f"{path} has no pixel spacing: a detector needs one")
        height, width = image.pixels.shape
        sidecar = path.with_suffix("").with_suffix(ROI_SUFFIX)
        masses = tuple(parse_sidecar("roi", sidecar.read_bytes(), width, height)) if sidecar.is_file() else ()
        films.append(FilmTruth(path, f"SYNTH-{path.stem}", image.pixel_spacing_mm[0], masses, "synthetic"))
    if not films:
        raise DataError(f"no synthetic film (*.dcm) in {folder}: make some with `mammo-data synth --films N`")
    return films


def load_canvas(truth: FilmTruth, spec: DetectorInput) -> Canvas:
    pixels, frame = frame_film(decode_file(truth.path).pixels, truth.spacing_mm, spec)
    return Canvas(truth, pixels, frame, tuple(frame.to_canvas(mass) for mass in truth.masses))


def targets(
    masses: Sequence[Region], spec: DetectorInput
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """The heatmap target, the log-radius target and where the latter counts (1 at each mass's centre cell)."""
    rows, columns = spec.cells
    centre_y = (np.arange(rows, dtype=np.float32)[:, None] + 0.5) * spec.stride
    centre_x = (np.arange(columns, dtype=np.float32)[None, :] + 0.5) * spec.stride
    heat = np.zeros(spec.cells, np.float32)
    log_radius = np.zeros(spec.cells, np.float32)
    weight = np.zeros(spec.cells, np.float32)
    for mass in masses:
        sigma = max(mass.radius / 3, spec.stride / 2)
        bump = np.exp(-((centre_x - mass.cx) ** 2 + (centre_y - mass.cy) ** 2) / (2 * sigma**2))
        np.maximum(heat, bump, out=heat)
        row, column = cell_of(mass, spec)
        heat[row, column] = 1.0
        log_radius[row, column] = math.log(max(mass.radius, 1.0))
        weight[row, column] = 1.0
    return heat, log_radius, weight


def augment(canvas: Canvas, rng: np.random.Generator) -> tuple[NDArray[np.uint8], tuple[Region, ...]]:
    """A training view: flipped top to bottom or not (the chest wall stays left), rescaled, shifted up or down,
    its contrast bent by a gamma; masses moved with it (one whose centre leaves the canvas is dropped)."""
    height, width = canvas.pixels.shape
    pixels = canvas.pixels
    masses = canvas.masses
    if rng.random() < 0.5:
        pixels = pixels[::-1]
        masses = tuple(replace(mass, cy=height - mass.cy) for mass in masses)
    scale = float(rng.uniform(*SCALE_JITTER))
    scaled = cv2.resize(pixels, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    shift = int(rng.integers(-SHIFT_PX, SHIFT_PX + 1))  # the scaled canvas's top edge, in the view
    from_row, to_row = max(0, -shift), max(0, shift)
    rows = min(scaled.shape[0] - from_row, height - to_row)
    columns = min(scaled.shape[1], width)
    view = np.zeros_like(pixels)
    view[to_row : to_row + rows, :columns] = scaled[from_row : from_row + rows, :columns]
    gamma = float(rng.uniform(*GAMMA))
    view = np.rint(255.0 * (view / 255.0) ** gamma).astype(np.uint8)
    moved = tuple(
        replace(mass, cx=mass.cx * scale, cy=mass.cy * scale + shift, radius=mass.radius * scale) for mass in masses
    )
    return view, tuple(mass for mass in moved if 0 <= mass.cx < width and 0 <= mass.cy < height)


def patient_folds(films: Sequence[FilmTruth], folds: int, seed: int) -> list[int]:
    """Each film's fold: whole patients dealt round the folds in a seeded order, patients with masses first, so
    every fold gets its share of masses and of normal films and no patient is in two."""
    patients = sorted({film.patient for film in films})
    if len(patients) < folds:
        raise DataError(f"{len(patients)} patients cannot fill {folds} folds")
    masses = {patient: sum(len(film.masses) for film in films if film.patient == patient) for patient in patients}
    order = list(np.random.default_rng(seed).permutation(patients))
    order.sort(key=lambda patient: -masses[patient])  # stable: the seeded order within equal counts
    fold_of = {patient: index % folds for index, patient in enumerate(order)}
    return [fold_of[film.patient] for film in films]


def describe(films: Sequence[FilmTruth], left_out: dict[str, str]) -> dict[str, object]:
    """What a run was trained and measured on, for its report."""
    return {
        "films": len(films),
        "patients": len({film.patient for film in films}),
        "masses": sum(len(film.masses) for film in films),
        "normal_films": sum(not film.masses for film in films),
        "left_out": left_out,
    }
