"""Importing the real MIAS films (skipped where ../shared is absent)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from edge_app.decode import decode_file
from mammo_train.layout import scan_dataset
from mammo_train.mias import import_mias, parse_info


@pytest.fixture(scope="module")
def mias_import(mias_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("mias")
    return out, import_mias(mias_dir, out, copies=1)


def test_counts_match_the_ground_truth(mias_import: tuple[Path, object]) -> None:
    out, report = mias_import
    assert report.crops == 58  # type: ignore[attr-defined]
    assert (report.benign, report.malignant) == (38, 20)  # type: ignore[attr-defined]
    assert len(report.films) == 55  # type: ignore[attr-defined]
    assert len(report.patients) == 53  # type: ignore[attr-defined]
    assert report.missing_coordinates == ["mdb059"]  # type: ignore[attr-defined]
    assert len(report.absent_films) > 200  # type: ignore[attr-defined]
    records = scan_dataset(out)
    assert len(records) == 116  # 58 crops + 1 copy each
    assert len({record.group("patient") for record in records}) == 53
    assert {record.original for record in records if record.original.startswith("mdb144")} == {"mdb144_1", "mdb144_2"}


def test_crops_are_centred_on_the_listed_coordinates(mias_dir: Path, mias_import: tuple[Path, object]) -> None:
    out, _ = mias_import
    masses = {m.ref: m for m in parse_info(mias_dir / "Info.txt") if m.is_mass and m.x is not None}
    with (out / "MIAS Dataset" / "masses.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if " (" not in row["file"]]
    single = [row for row in rows if "_" not in row["original"]]
    assert len(single) > 40
    for row in single:
        mass = masses[row["original"]]
        crop = decode_file(out / "MIAS Dataset" / row["file"]).pixels
        film = decode_file(mias_dir / f"{mass.ref}.pgm").pixels
        assert crop.shape[0] == max(64, 2 * mass.radius)
        half = crop.shape[0] // 2
        centre_row = 1024 - mass.y  # MIAS origin is bottom-left
        # the crop's centre pixel is the film's pixel at the listed centre
        assert crop[half, half] == film[centre_row, mass.x]
        window = film[max(centre_row - 3, 0) : centre_row + 4, max(mass.x - 3, 0) : mass.x + 4]
        np.testing.assert_array_equal(
            crop[half - 3 : half + 4, half - 3 : half + 4][: window.shape[0], : window.shape[1]], window
        )
