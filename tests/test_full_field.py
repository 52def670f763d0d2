"""Full-field films on the device (the CI bundle, in the TensorFlow-free venv): every MIAS mass answered per region
exactly as its imported crop is, and films without regions (real MIAS, large synthetic DICOM) never classified,
each kept and answered ``needs_roi`` with a reason."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, edge_python, shipped_variant, write_daemon_config

pytestmark = pytest.mark.slow


def _once(bundle: Path, results: Path, *inputs: Path, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    command = [edge_python("MAMMO_TEST_EDGE_PYTHON"), "-m", "edge_app.cli", "once", "--model", str(bundle)]
    command += ["--variant", shipped_variant(bundle), "--threads", "2", "--results", str(results), *extra]
    return subprocess.run([*command, *map(str, inputs)], cwd=REPO, capture_output=True, text=True, check=False)


def _results(folder: Path) -> Iterator[dict]:
    for path in sorted(folder.glob("*.json")):
        yield json.loads(path.read_text())


def test_every_mias_mass_gets_the_probability_of_its_imported_crop(
    mias_dir: Path, bundle: Path, tmp_path: Path
) -> None:
    from edge_app.manifest import load_manifest
    from mammo_train.films import mias_sidecars
    from mammo_train.mias import import_mias

    rule = load_manifest(bundle).scope.crop_rule
    films = tmp_path / "films"
    per_film = mias_sidecars(mias_dir, films)  # mdbNNN.roi.json beside links to the real films
    for ref in per_film:
        (films / f"{ref}.pgm").symlink_to(mias_dir / f"{ref}.pgm")
    import_mias(mias_dir, tmp_path / "import", min_size=rule.min_side, crop_scale=rule.scale)
    crops = sorted((tmp_path / "import" / "MIAS Dataset").glob("*/*.png"))

    on_films = _once(bundle, tmp_path / "film-results", films)
    assert on_films.returncode == 0, on_films.stderr
    # The crops are regions already; the largest is wider than this small model's patches, so the test lifts the
    # pixel limit for them as a user would ([scope] max_side_px): a crop is classified whole, as it always was.
    on_crops = _once(bundle, tmp_path / "crop-results", *crops, extra=("--max-side-px", "4096"))
    assert on_crops.returncode == 0, on_crops.stderr
    crop_probability = {Path(r["input"]).stem: r["probability"] for r in _results(tmp_path / "crop-results")}
    compared = 0
    for result in _results(tmp_path / "film-results"):
        ref = Path(result["input"]).stem
        assert result["status"] == "classified" and result["sidecar"] == f"{ref}.roi.json"
        assert len(result["regions"]) == len(per_film[ref])
        for index, region in enumerate(result["regions"]):
            name = ref if len(per_film[ref]) == 1 else f"{ref}_{index + 1}"
            assert region["probability"] == pytest.approx(crop_probability[name], abs=1e-6), name
            compared += 1
        assert (tmp_path / "film-results" / result["heatmap"]).is_file()
    assert compared == 58 and len(crop_probability) == 58
    assert sum(len(per_film[ref]) == 2 for ref in per_film) == 3  # mdb005, mdb132, mdb144: two regions each


def test_full_field_films_without_regions_are_kept_and_answered_needs_roi(
    mias_dir: Path, bundle: Path, tmp_path: Path
) -> None:
    """Real MIAS films and large synthetic 12-bit DICOM films dropped without sidecars: zero benign/malignant answers,
    each kept; the same film dropped again with its sidecar is classified per region."""
    from mammo_train.films import generate_films

    root = tmp_path / "daemon"
    config = write_daemon_config(root, bundle, variant=shipped_variant(bundle), settle=0.2, sidecar_wait=1.0)
    synthetic = generate_films(tmp_path / "synthetic", 2, 96, seed=5)
    synthetic += generate_films(tmp_path / "large", 1, 96, seed=5, size=(3328, 4096), first=2)  # a full FFDM film
    inbox = root / "inbox"
    mias = sorted(mias_dir.glob("mdb*.pgm"))
    dropped = [*mias, *synthetic]
    for path in dropped:
        shutil.copy(path, inbox / path.name)
    command = [edge_python("MAMMO_TEST_EDGE_PYTHON"), "-m", "edge_app.cli", "run", "--config", str(config)]
    completed = subprocess.run([*command, "--exit-when-idle"], cwd=REPO, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr
    results = list(_results(root / "results"))
    assert len(results) == len(dropped) == 63
    assert {r["status"] for r in results} == {"needs_roi"}
    assert all(r["label"] is None and r["regions"] == [] and r["probability"] is None for r in results)
    by_input = {r["input"]: r for r in results}
    assert "1024x1024 px, larger than" in by_input["mdb001.pgm"]["reason"]
    assert "mdb001.roi.json" in by_input["mdb001.pgm"]["reason"]
    film = by_input["film_000.dcm"]
    assert film["image"] == {
        "format": "DICOM",
        "width": 1664,
        "height": 2048,
        "extent_mm": [166.4, 204.8],
        "laterality": "L",
        "view": "CC",
    }
    for path in dropped:  # kept, byte for byte
        assert (root / "archive" / path.name).read_bytes() == path.read_bytes()
    audit = [json.loads(line) for line in (root / "results" / "results.jsonl").read_text().splitlines()]
    assert [entry["status"] for entry in audit] == ["needs_roi"] * 63
    assert by_input["film_002.dcm"]["image"]["extent_mm"] == [332.8, 409.6]

    shutil.copy(synthetic[1], inbox / synthetic[1].name)  # submitted again, with its regions
    shutil.copy(synthetic[1].with_suffix("").with_suffix(".roi.json"), inbox / "film_001.roi.json")
    shutil.copy(mias[0], inbox / "marked.pgm")  # and a film whose sidecar is wrong
    (inbox / "marked.roi.json").write_text('{"regions": [{"label": "A", "x": 535, "y": 1425, "radius": 197}]}')
    completed = subprocess.run([*command, "--exit-when-idle"], cwd=REPO, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr
    again = json.loads((root / "results" / "film_001 (2).json").read_text())
    assert again["status"] == "classified" and [r["label"] for r in again["regions"]] == ["A", "B"]
    assert again["duplicate_of"] is None
    assert (root / "archive" / "film_001 (2).roi.json").is_file()
    assert (root / "results" / again["heatmap"]).stat().st_size > 0
    error = json.loads((root / "quarantine" / "marked.pgm.error.json").read_text())
    assert error["exception"] == "RegionError" and error["sidecar"] == "marked.roi.json"
    assert error["reason"] == "marked.roi.json: region 'A': centre (535, 1425) lies outside the 1024x1024 image"
    assert (root / "quarantine" / "marked.pgm").read_bytes() == mias[0].read_bytes()  # kept, with its sidecar
    assert (root / "quarantine" / "marked.roi.json").is_file() and not any(inbox.iterdir())
