"""Synthetic full-field films (``mammo-data synth --films N``) and region sidecars for real MIAS films
(``mammo-data mias-sidecars``): the offline stand-ins for what a clinic holds.

A synthetic film is a 12-bit DICOM mammogram (``MG``, ``MONOCHROME2``, 0.1 mm ``ImagerPixelSpacing``, laterality and
view) of a whole breast: a half-ellipse of fibroglandular texture against the chest wall, with one or two masses
of either class drawn by the same renderer as the training crops (`edge_app.samples.render_mass`) at sizes spread as
screening finds them, blended in with a feathered edge; every third film is normal (no mass), as most films are.
Beside a film with masses, ``NAME.roi.json`` marks each by its centre and enclosing radius, and ``films.csv`` records
each region's truth (benign or malignant). Deterministic per seed.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_app.decode import decode_file
from edge_app.errors import DataError
from edge_app.regions import ROI_SUFFIX, default_label
from edge_app.samples import render_mass
from mammo_train.mias import MiasRow, mass_region, parse_info
from mammo_train.synth import mass_geometry

FILM_SIZE = (1664, 2048)  # width, height: a small full-field detector at 0.1 mm, ~17 x 20 cm
PIXEL_SPACING_MM = 0.1
BITS_STORED = 12
FILMS_CSV = "films.csv"
PLACEMENT_ATTEMPTS = 1000
SEPARATION = 1.5
"""Centres of two masses at least this many (larger) patch sides apart: their patches never overlap, and two masses a
reader marks separately stay apart."""
MASSES_PER_FILM = (1, 2, 0)
"""Film k holds ``MASSES_PER_FILM[k % 3]`` masses: a normal film among every three, where any candidate is a false
positive."""
MASS_SCALE = (0.75, 2.0)
"""Each mass's patch side is the crop size times a log-uniform factor in this range (at most the placement window):
with the demo's 192 px at 0.1 mm, enclosing radii of about 2 to 13 mm, the span of masses MIAS locates (its
quartiles 2.8, 6.6 and 11 mm)."""


@dataclass(frozen=True)
class FilmRegion:
    label: str
    x: float
    y: float
    radius: float
    malignant: bool


def _breast(rng: np.random.Generator, width: int, height: int, left: bool) -> NDArray[np.float32]:
    """Tissue intensity in [0, 1]: a textured half-ellipse against the chest wall, dark air around it."""
    small = (width // 4, height // 4)
    texture = np.zeros((small[1], small[0]), np.float32)
    for sigma, share in ((12.0, 0.6), (4.0, 0.3), (1.5, 0.1)):  # lobules, ducts, fine parenchyma
        layer = cv2.GaussianBlur(rng.standard_normal((small[1], small[0])).astype(np.float32), (0, 0), sigma)
        texture += share * layer / (layer.std() + 1e-6)
    texture = np.asarray(cv2.resize(texture, (width, height), interpolation=cv2.INTER_CUBIC), np.float32)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    wall = cols if left else width - 1 - cols
    reach = width * rng.uniform(0.72, 0.85)
    inside = (wall / reach) ** 2 + ((rows - height / 2) / (height * 0.47)) ** 2
    edge = np.clip((1.0 - inside) * 12, 0, 1)  # a soft skin line
    tissue = 0.36 + 0.06 * texture + 0.08 * np.clip(1 - wall / reach, 0, 1)
    return np.asarray(edge * tissue + (1 - edge) * 0.03, np.float32)


def render_film(
    rng: np.random.Generator, masses: int, patch_size: int, left: bool, size: tuple[int, int] = FILM_SIZE
) -> tuple[NDArray[np.uint16], list[FilmRegion]]:
    """One film (12-bit, `size` = width, height) and its masses' regions, in image coordinates; `patch_size` is the
    crop size the masses' sizes spread around (`MASS_SCALE`)."""
    width, height = size
    largest = min(width // 2, height // 4)  # the window a mass is placed in
    if patch_size > largest:
        raise DataError(
            f"masses of {patch_size} px do not fit a {width}x{height} film (at most {largest} px): use a smaller --size"
        )
    film = _breast(rng, width, height, left)
    regions: list[FilmRegion] = []
    sides: list[int] = []
    while len(regions) < masses:
        malignant = bool(rng.integers(0, 2))
        side = min(largest, round(patch_size * float(np.exp(rng.uniform(*np.log(MASS_SCALE))))))
        mass = render_mass(rng, side, malignant)
        geometry = mass_geometry(mass)
        for _ in range(PLACEMENT_ATTEMPTS):
            wall_x = int(rng.uniform(0.15, 0.5) * width)
            x0 = wall_x if left else width - wall_x - side
            y0 = int(rng.uniform(0.2, 0.75) * height)
            # masses stay apart, as two lesions a reader marks separately do
            if all(
                np.hypot(x0 + geometry.cx - r.x, y0 + geometry.cy - r.y) >= SEPARATION * max(side, other)
                for r, other in zip(regions, sides, strict=True)
            ):
                break
        else:
            raise DataError(
                f"{masses} masses of up to {side} px do not fit a {width}x{height} film "
                f"{SEPARATION:g} patch sides apart ({PLACEMENT_ATTEMPTS} places tried): use a smaller --size"
            )
        half = side // 2
        feather = np.hypot(*np.mgrid[-half : side - half, -half : side - half].astype(np.float32))
        weight = np.clip((0.5 * side - feather) / (0.15 * side), 0, 1)
        window = film[y0 : y0 + side, x0 : x0 + side]
        window[:] = weight * (mass.image.astype(np.float32) / 255) + (1 - weight) * window
        label = default_label(len(regions))
        regions.append(FilmRegion(label, x0 + geometry.cx, y0 + geometry.cy, geometry.radius, malignant))
        sides.append(side)
    pixels = np.rint(np.clip(film, 0, 1) * (2**BITS_STORED - 1)).astype(np.uint16)
    return pixels, regions


def write_film_dicom(path: Path, pixels: NDArray[np.uint16], laterality: str, view: str, seed: int) -> None:
    """A Digital Mammography X-Ray Image (For Presentation) of a synthetic patient, by the device's own builder;
    its UIDs derive from the seed and the file name, so the same call writes the same file."""
    from pydicom.uid import generate_uid

    from edge_app.dicom.sample import encode, mammogram

    def uid(part: str) -> str:
        return str(generate_uid(entropy_srcs=[str(seed), path.name, part]))

    dataset = mammogram(
        pixels,
        SOPInstanceUID=uid("sop"),
        StudyInstanceUID=uid("study"),
        SeriesInstanceUID=uid("series"),
        PatientID=f"SYNTH-{path.stem}",
        PatientName="Synthetic^Film",
        ImageLaterality=laterality,
        ViewPosition=view,
        ImagerPixelSpacing=[PIXEL_SPACING_MM, PIXEL_SPACING_MM],
        PixelSpacing=None,
        BitsStored=BITS_STORED,
        HighBit=BITS_STORED - 1,
    )
    path.write_bytes(encode(dataset))


def roi_document(regions: list[dict[str, object]]) -> str:
    return json.dumps({"regions": regions}, indent=2) + "\n"


def generate_films(
    out: Path, count: int, patch_size: int, seed: int, size: tuple[int, int] = FILM_SIZE, first: int = 0
) -> list[Path]:
    """`count` films of `size` under `out` (``film_<first>.dcm`` on), each with masses beside its ``.roi.json``; film k
    holds ``MASSES_PER_FILM[k % 3]`` masses."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 17])
    written, rows = [], []
    for index in range(first, first + count):
        left = bool(index % 2 == 0)
        pixels, regions = render_film(rng, MASSES_PER_FILM[index % 3], patch_size, left, size)
        path = out / f"film_{index:03d}.dcm"
        write_film_dicom(path, pixels, "L" if left else "R", ("CC", "MLO")[(index // 2) % 2], seed)
        if regions:  # a normal film has nothing to mark
            sidecar = [
                {"label": r.label, "x": round(r.x, 1), "y": round(r.y, 1), "radius": round(r.radius, 1)}
                for r in regions
            ]
            path.with_suffix("").with_suffix(ROI_SUFFIX).write_text(roi_document(sidecar))
        rows += [{"film": path.name, "region": r.label, "label": int(r.malignant)} for r in regions]
        written.append(path)
    with (out / FILMS_CSV).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=("film", "region", "label"))
        writer.writeheader()
        writer.writerows(rows)
    return written


def mias_sidecars(films_dir: Path, out: Path) -> dict[str, list[MiasRow]]:
    """``mdbNNN.roi.json`` for every MIAS film with located masses, regions labelled A, B... in ``Info.txt`` order
    (the order in which `import-mias` names a film's crops ``mdbNNN_1``, ``mdbNNN_2``); returns the masses per film."""
    per_film: dict[str, list[MiasRow]] = {}
    for row in parse_info(Path(films_dir) / "Info.txt"):
        if row.is_mass and row.x is not None and (Path(films_dir) / f"{row.ref}.pgm").is_file():
            per_film.setdefault(row.ref, []).append(row)
    out.mkdir(parents=True, exist_ok=True)
    for ref, masses in per_film.items():
        height = decode_file(Path(films_dir) / f"{ref}.pgm").pixels.shape[0]
        regions = []
        for index, mass in enumerate(masses):
            region = mass_region(mass, height)
            regions.append({"label": default_label(index), "x": region.cx, "y": region.cy, "radius": region.radius})
        (out / f"{ref}{ROI_SUFFIX}").write_text(roi_document(regions))
    return per_film
