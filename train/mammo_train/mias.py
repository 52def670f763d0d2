"""Build the MIAS part of the Mendeley layout from raw MIAS films (``Info.txt`` + 1024x1024 PGM).

Masses, not films, carry labels: a film with two masses gives two crops, and mdb144 holds one benign and one
malignant mass. Each crop is cut by the device's own crop rule (`edge_app.regions.crop_region`) around the listed
centre (MIAS puts the origin at the *bottom*-left corner, so the image row is ``1024 - y``): side
``max(min_size, crop_scale * radius)``, black beyond the film's edge so the mass stays centred. The rule is written to
the folder's ``crop.json``, so a model trained on these crops carries it to the device. Films come in left/right pairs
of one patient (mdb001+mdb002), so the group is the pair.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_app.decode import decode_file
from edge_app.errors import DataError, MissingInputError
from edge_app.regions import CropRule, Region, crop_region
from mammo_train.layout import CLASS_FOLDERS, write_crop_rule, write_sidecar
from mammo_train.synth import augment

MASS_CLASSES = frozenset({"CIRC", "SPIC", "MISC"})
_ROW = re.compile(
    r"^(?P<ref>mdb\d{3})\s+(?P<tissue>[FGD])\s+(?P<abnormality>[A-Z]{4})"
    r"(?:\s+(?P<severity>[BM]))?(?:\s+(?P<x>\d+)\s+(?P<y>\d+)\s+(?P<radius>\d+))?\s*$"
)


@dataclass(frozen=True)
class MiasRow:
    """One abnormality row of ``Info.txt`` (NORM rows included: they name films too)."""

    ref: str
    abnormality: str
    label: int | None
    x: int | None
    y: int | None
    radius: int | None

    @property
    def is_mass(self) -> bool:
        return self.abnormality in MASS_CLASSES

    @property
    def patient(self) -> str:
        """Films 1+2, 3+4, ... are the left and right breast of one patient."""
        return f"MIAS-P{(int(self.ref[3:]) + 1) // 2:03d}"


@dataclass
class ImportReport:
    crops: int = 0
    benign: int = 0
    malignant: int = 0
    films: set[str] = field(default_factory=set)
    patients: set[str] = field(default_factory=set)
    missing_coordinates: list[str] = field(default_factory=list)
    absent_films: set[str] = field(default_factory=set)
    absent_mass_films: set[str] = field(default_factory=set)

    def lines(self) -> list[str]:
        return [
            f"mass crops: {self.crops} ({self.benign} benign, {self.malignant} malignant)",
            f"films used: {len(self.films)}; patient groups: {len(self.patients)}",
            "rows without coordinates (skipped): " + (", ".join(self.missing_coordinates) or "none"),
            f"films listed in Info.txt but absent (skipped): {len(self.absent_films)}, "
            f"{len(self.absent_mass_films)} of them with a mass",
        ]


def parse_info(info: Path) -> Iterator[MiasRow]:
    """Every film row of MIAS ``Info.txt``; the header prose is passed over."""
    for line in info.read_text(errors="replace").splitlines():
        match = _ROW.match(line.strip())
        if not match:
            continue
        if match["abnormality"] in MASS_CLASSES and match["severity"] is None:
            raise DataError(f"MIAS mass row without severity: {line.strip()!r}")
        coordinates = (match["x"], match["y"], match["radius"])
        x, y, radius = (int(value) for value in coordinates) if match["x"] else (None, None, None)
        label = None if match["severity"] is None else int(match["severity"] == "M")
        yield MiasRow(match["ref"], match["abnormality"], label, x, y, radius)


MIAS_PIXEL_SPACING_MM = 0.2
"""mini-MIAS films are 1024x1024 at 200 micron pixels (MIAS README)."""


def mass_region(mass: MiasRow, film_height: int) -> Region:
    """The mass as a region in image coordinates (MIAS counts y from the bottom edge)."""
    assert mass.x is not None and mass.y is not None and mass.radius is not None
    return Region(mass.ref, float(mass.x), float(film_height - mass.y), float(mass.radius))


def import_mias(
    films_dir: Path, out: Path, copies: int = 0, min_size: int = 64, crop_scale: float = 2.0, seed: int = 0
) -> ImportReport:
    """Write ``out/MIAS Dataset/{Benign,Malignant} Masses`` with ``masses.csv``; report what was used."""
    info = Path(films_dir) / "Info.txt"
    if not info.is_file():
        raise MissingInputError(f"{info} not found: FILMS must hold MIAS Info.txt and the mdbNNN.pgm films")
    rows_listed = list(parse_info(info))
    masses = [row for row in rows_listed if row.is_mass]
    per_film: dict[str, int] = {}
    for mass in masses:
        per_film[mass.ref] = per_film.get(mass.ref, 0) + 1
    seen: dict[str, int] = {}
    report = ImportReport()
    rows: list[dict[str, object]] = []
    source_dir = Path(out) / "MIAS Dataset"
    rng = np.random.default_rng(seed)
    rule = CropRule(crop_scale, min_size)
    report.absent_films = {row.ref for row in rows_listed if not (Path(films_dir) / f"{row.ref}.pgm").is_file()}
    for mass in masses:
        seen[mass.ref] = seen.get(mass.ref, 0) + 1
        film_path = Path(films_dir) / f"{mass.ref}.pgm"
        if not film_path.is_file():
            report.absent_mass_films.add(mass.ref)
            continue
        if mass.x is None or mass.label is None:
            report.missing_coordinates.append(mass.ref)
            continue
        film = decode_file(film_path).pixels
        crop, _ = crop_region(film, mass_region(mass, film.shape[0]), rule)
        name = mass.ref if per_film[mass.ref] == 1 else f"{mass.ref}_{seen[mass.ref]}"
        folder = source_dir / CLASS_FOLDERS[mass.label]
        folder.mkdir(parents=True, exist_ok=True)
        assert mass.radius is not None
        centre = crop.shape[0] // 2
        variants = [(name, crop, 1.0)]
        for copy in range(1, copies + 1):
            zoom = float(rng.uniform(1.0, 1.1))
            variants.append((f"{name} ({copy})", augment(crop, copy - 1, zoom, cv2.INTER_LINEAR), zoom))
        for file_name, pixels, zoom in variants:
            file = folder / f"{file_name}.png"
            cv2.imwrite(str(file), pixels)
            rows.append(
                {
                    "file": file.relative_to(source_dir).as_posix(),
                    "original": name,
                    "label": mass.label,
                    "patient": mass.patient,
                    "cx": centre,
                    "cy": centre,
                    "radius": round(mass.radius * zoom, 2),
                }
            )
        report.crops += 1
        report.benign += mass.label == 0
        report.malignant += mass.label == 1
        report.films.add(mass.ref)
        report.patients.add(mass.patient)
    if rows:
        write_sidecar(source_dir, rows)
        write_crop_rule(source_dir, rule, MIAS_PIXEL_SPACING_MM)
    return report
