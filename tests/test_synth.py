"""The synthetic generator: layout, determinism, recorded geometry, and no trivial class shortcut."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from edge_app.decode import decode_file
from mammo_train.layout import scan_dataset
from mammo_train.synth import SynthSpec, generate, mass_geometry, render_mass


def _sidecar(root: Path, source: str = "SYNTH") -> list[dict[str, str]]:
    with (root / f"{source} Dataset" / "masses.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_layout_and_counts(synth_root: Path) -> None:
    records = scan_dataset(synth_root)
    assert {record.source for record in records} == {"SYNTH", "OTHER"}
    for source in ("SYNTH", "OTHER"):
        mine = [record for record in records if record.source == source]
        assert len(mine) == 2 * 12 * 3  # two classes, 12 originals, original + 2 copies
        assert sum(record.label for record in mine) == 12 * 3
        names = {record.path.name for record in mine}
        assert "SYN00000 (2).png" in names or "OTH00000 (2).png" in names


def test_deterministic_per_seed(tmp_path: Path) -> None:
    spec = SynthSpec(per_class=3, size=64, seed=11, copies=1)
    generate(tmp_path / "a", spec)
    generate(tmp_path / "b", spec)
    generate(tmp_path / "c", SynthSpec(per_class=3, size=64, seed=12, copies=1))
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert files
    for file in files:
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    assert any((tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes() for f in files)


def test_copies_differ_from_their_original(synth_root: Path) -> None:
    folder = synth_root / "SYNTH Dataset" / "Benign Masses"
    original = decode_file(folder / "SYN00000.png").pixels
    for copy in (1, 2):
        assert not np.array_equal(original, decode_file(folder / f"SYN00000 ({copy}).png").pixels)


def test_recorded_mass_is_where_the_pixels_are(synth_root: Path) -> None:
    """The mass body is brighter than the ring of background around it, in every image including copies."""
    rows = _sidecar(synth_root)
    assert len(rows) == 72
    for row in rows:
        pixels = decode_file(synth_root / "SYNTH Dataset" / row["file"]).pixels.astype(float)
        cx, cy, radius = float(row["cx"]), float(row["cy"]), float(row["body_radius"])
        rr, cc = np.mgrid[0 : pixels.shape[0], 0 : pixels.shape[1]]
        distance = np.hypot(cc - cx, rr - cy)
        inside = pixels[distance < 0.5 * radius].mean()
        ring = pixels[(distance > 1.6 * radius) & (distance < 2.2 * radius)].mean()
        assert inside > ring + 10, row["file"]


def test_lesion_circle_encloses_the_spicules() -> None:
    """The recorded circle encloses the whole lesion mask (body and spicules), as MIAS's circles do; benign masses
    have no spicules, so their two circles agree."""
    for seed in range(6):
        for malignant in (False, True):
            mass = render_mass(np.random.default_rng(seed), 96, malignant)
            geometry = mass_geometry(mass)
            rows, cols = np.nonzero(mass.lesion)
            assert np.hypot(cols - geometry.cx, rows - geometry.cy).max() <= geometry.radius + 1e-6
            assert mass.body.sum() > 0 and not (mass.body & ~mass.lesion).any()
            if malignant:
                assert geometry.radius > 1.2 * geometry.body_radius  # the spicules reach beyond the body
            else:
                assert geometry.radius == geometry.body_radius


def test_no_intensity_or_size_shortcut(tmp_path: Path) -> None:
    """Class means of brightness and mass size differ by less than three standard errors."""
    per_class = 60
    generate(tmp_path, SynthSpec(per_class=per_class, size=96, seed=5, copies=0))
    stats: dict[str, list[tuple[float, float]]] = {"0": [], "1": []}
    for row in _sidecar(tmp_path):
        pixels = decode_file(tmp_path / "SYNTH Dataset" / row["file"]).pixels
        stats[row["label"]].append((float(pixels.mean()), float(row["body_radius"])))
    benign, malignant = (np.array(stats[label]) for label in ("0", "1"))
    for column, name in enumerate(("mean intensity", "body radius")):
        pooled = np.concatenate([benign[:, column], malignant[:, column]]).std()
        gap = abs(benign[:, column].mean() - malignant[:, column].mean())
        assert gap < 3 * pooled * np.sqrt(2 / per_class), name


def test_patients_group_masses(synth_root: Path) -> None:
    records = scan_dataset(synth_root)
    by_patient: dict[str, set[str]] = {}
    for record in records:
        by_patient.setdefault(record.group("patient"), set()).add(record.original)
    assert max(len(originals) for originals in by_patient.values()) == 2
    assert len(by_patient) == 2 * 12  # 24 originals per source in pairs, two sources


def test_film_masses_that_cannot_be_placed_are_a_clear_error_not_an_endless_search() -> None:
    import pytest

    from edge_app.errors import DataError
    from mammo_train.films import render_film

    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match=r"^masses of 300 px do not fit a 800x1000 film \(at most 250 px\)"):
        render_film(rng, 1, 300, True, (800, 1000))
    with pytest.raises(DataError, match=r"^5 masses of up to \d+ px do not fit a 800x1000 film 1.5 patch sides apart"):
        render_film(rng, 5, 200, True, (800, 1000))
    pixels, regions = render_film(rng, 2, 200, False, (800, 1000))
    assert pixels.shape == (1000, 800) and len(regions) == 2
    # 1.5 patch sides apart, the smaller patch at least 0.75 x 200 px
    assert np.hypot(regions[0].x - regions[1].x, regions[0].y - regions[1].y) >= 1.5 * 150


def test_synthetic_films_hold_one_two_or_no_masses_of_spread_sizes_the_same_for_a_seed(tmp_path: Path) -> None:
    """Every third film is normal (no mass, so no sidecar and no truth row); the masses' sizes spread over the
    crop size's `MASS_SCALE` range, as masses on films do; a seed writes the same files."""

    from mammo_train.films import MASS_SCALE, generate_films, render_film

    films = generate_films(tmp_path / "a", 6, 96, seed=3, size=(832, 1024))
    sidecars = [film.with_suffix("").with_suffix(".roi.json") for film in films]
    counts = [len(json.loads(s.read_text())["regions"]) if s.is_file() else 0 for s in sidecars]
    assert counts == [1, 2, 0, 1, 2, 0]
    with (tmp_path / "a" / "films.csv").open() as handle:
        assert [row["film"] for row in csv.DictReader(handle)] == [
            f"film_{k:03d}.dcm" for k, count in enumerate(counts) for _ in range(count)
        ]
    again = generate_films(tmp_path / "b", 6, 96, seed=3, size=(832, 1024))
    assert [path.read_bytes() for path in again] == [path.read_bytes() for path in films]
    rng = np.random.default_rng(1)
    radii = [region.radius for _ in range(15) for region in render_film(rng, 2, 96, True, (832, 1024))[1]]
    # render_mass draws a mass's radius at 0.11-0.2 of its patch, outline and spicules adding up to about a third more
    assert 0.11 * 96 * MASS_SCALE[0] <= min(radii) < 0.2 * 96 and max(radii) > 0.2 * 96 * 1.4
