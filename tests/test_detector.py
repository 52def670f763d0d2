"""The mass detector's training side: its films and truth (MIAS rows turned into film regions, synthetic sidecars),
the targets it learns from, augmentation that moves the truth with the pixels, folds that never split a patient, and
a tiny detector that learns to find bright masses on synthetic films, read back as the device reads it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge_app.detect import DetectorInput
from edge_app.errors import DataError
from edge_app.regions import Region
from mammo_train.detector_data import (
    Canvas,
    FilmTruth,
    augment,
    load_canvas,
    mias_films,
    patient_folds,
    synthetic_films,
    targets,
)
from mammo_train.films import generate_films

SPEC = DetectorInput(spacing_mm=0.8, canvas=(320, 256), stride=4)


def test_the_targets_peak_at_each_mass_centre_with_its_radius_there() -> None:
    heat, log_radius, weight = targets([Region("A", 41.0, 62.0, 12.0), Region("B", 200.0, 300.0, 2.0)], SPEC)
    assert heat.shape == log_radius.shape == weight.shape == (80, 64)
    assert heat[15, 10] == 1.0 and heat[75, 50] == 1.0 and np.count_nonzero(heat == 1.0) == 2
    assert log_radius[15, 10] == pytest.approx(np.log(12.0)) and log_radius[75, 50] == pytest.approx(np.log(2.0))
    assert np.flatnonzero(weight).tolist() == [15 * 64 + 10, 75 * 64 + 50]
    assert heat[15, 11] == pytest.approx(np.exp(-(5**2) / (2 * 4.0**2)), rel=1e-5)  # cell centre (46, 62); radius / 3
    assert heat[75, 51] == pytest.approx(np.exp(-(6**2 + 2**2) / (2 * 2.0**2)), rel=1e-5)  # sigma: half a cell at least
    assert targets([], SPEC)[0].max() == 0.0


def test_augmentation_moves_the_masses_with_the_pixels() -> None:
    pixels = np.zeros((320, 256), np.uint8)
    pixels[95:106, 35:46] = 255
    canvas = Canvas(FilmTruth(Path("f"), "P", 0.8, (), "synthetic"), pixels, None, (Region("A", 40.0, 100.0, 5.0),))  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    for _ in range(20):
        view, (mass,) = augment(canvas, rng)
        assert view.shape == (320, 256) and view[round(mass.cy), round(mass.cx)] >= 200
        assert 5.0 * 0.85 <= mass.radius <= 5.0 * 1.15 and mass.cx < 50  # the chest wall stays left
    edge = Canvas(canvas.truth, pixels, None, (Region("A", 40.0, 318.0, 5.0),))  # type: ignore[arg-type]
    assert any(not augment(edge, rng)[1] for _ in range(20))  # a centre pushed off the canvas is dropped


def test_folds_keep_each_patient_whole_and_share_out_the_masses() -> None:
    films = [
        FilmTruth(Path(f"f{i}"), f"P{i // 2}", 0.2, (Region("A", 1, 1, 1),) if i % 4 == 0 else (), "mias")
        for i in range(40)
    ]
    folds = patient_folds(films, 5, seed=3)
    for patient in {film.patient for film in films}:
        assert len({fold for film, fold in zip(films, folds, strict=True) if film.patient == patient}) == 1
    masses = [sum(len(film.masses) for film, fold in zip(films, folds, strict=True) if fold == k) for k in range(5)]
    assert masses == [2, 2, 2, 2, 2]
    assert patient_folds(films, 5, seed=3) == folds and patient_folds(films, 5, seed=4) != folds
    with pytest.raises(DataError, match="20 patients cannot fill 21 folds"):
        patient_folds(films, 21, seed=0)


def test_mias_films_turn_rows_into_film_regions_and_leave_out_what_cannot_be_scored(mias_dir: Path) -> None:
    films, left_out = mias_films(mias_dir)
    assert left_out == {"mdb059": "a mass without a centre and radius in Info.txt"}
    assert len(films) == 59 and sum(len(film.masses) for film in films) == 58
    assert sorted(film.path.stem for film in films if not film.masses) == ["mdb003", "mdb004", "mdb006", "mdb007"]
    first = next(film for film in films if film.path.stem == "mdb001")
    assert first.patient == "MIAS-P001" and first.spacing_mm == 0.2
    assert first.masses == (Region("mdb001", 535.0, 1024.0 - 425.0, 197.0),)  # Info.txt: 535 425 197, y up


def test_synthetic_films_carry_their_sidecars_truth_and_spacing(tmp_path: Path) -> None:
    generate_films(tmp_path, 2, 96, seed=5)
    (tmp_path / "film_001.roi.json").unlink()  # a film without a sidecar is a normal film
    films = synthetic_films(tmp_path)
    assert [film.path.name for film in films] == ["film_000.dcm", "film_001.dcm"]
    truth = json.loads((tmp_path / "film_000.roi.json").read_text())["regions"][0]
    assert (films[0].masses[0].cx, films[0].masses[0].cy) == (truth["x"], truth["y"])
    assert films[0].spacing_mm == pytest.approx(0.1) and films[1].masses == ()
    canvas = load_canvas(films[0], SPEC)
    assert canvas.pixels.shape == (320, 256) and canvas.frame.spacing_mm == pytest.approx(0.8)
    with pytest.raises(DataError, match="mammo-data synth --films"):
        synthetic_films(tmp_path / "empty")


@pytest.mark.tensorflow
def test_a_small_detector_learns_to_find_bright_masses_and_reads_back_onto_the_film(tmp_path: Path) -> None:
    from mammo_train.detector import build_detector, detect, train_detector
    from mammo_train.detector_cv import outcome
    from mammo_train.detector_data import DetectorSettings
    from mammo_train.froc import score_films, sensitivity_at

    spec = DetectorInput(spacing_mm=0.8, canvas=(256, 224), stride=4)
    films = synthetic_films(Path(generate_films(tmp_path, 12, 192, seed=2)[0]).parent)
    canvases = [load_canvas(film, spec) for film in films]
    model, history = train_detector(canvases[:8], spec, DetectorSettings(epochs=40, batch_size=4, learning_rate=3e-3))
    assert history[-1]["focal"] < history[0]["focal"] / 3
    found = detect(model, canvases, spec, max_candidates=4, min_score=0.01)
    outcomes = [outcome(canvas, candidates) for canvas, candidates in zip(canvases, found, strict=True)]
    assert sensitivity_at(score_films(outcomes[:8]), [1.0])[0] >= 0.9  # the films it learnt from
    assert all(len(items) <= 4 for items in found)
    heat, log_radius = build_detector(spec).output_shape
    assert heat == log_radius == (None, 64, 56, 1)
    with pytest.raises(DataError, match="multiples of 32"):
        build_detector(DetectorInput(canvas=(320, 260)))


@pytest.mark.tensorflow
def test_cross_validation_answers_each_film_by_a_detector_that_never_saw_its_patient(tmp_path: Path) -> None:
    from mammo_train.detector_cv import cross_validate, normal_film_false_positives
    from mammo_train.detector_data import DetectorSettings

    spec = DetectorInput(spacing_mm=1.6, canvas=(160, 128), stride=4)
    films = synthetic_films(Path(generate_films(tmp_path, 6, 192, seed=4)[0]).parent)
    films = [replace(film, patient=f"P{index // 2}") for index, film in enumerate(films)]  # two films a patient
    settings = DetectorSettings(epochs=10, batch_size=2, max_candidates=3)
    outcomes, folds, fold_of = cross_validate(films, [], spec, settings, folds=3)
    assert [outcome.film for outcome in outcomes] == [film.path.stem for film in films]
    assert [outcome.masses for outcome in outcomes] == [film.masses for film in films]
    assert [(fold.train_films, fold.test_films, fold.test_patients) for fold in folds] == [(4, 2, 1)] * 3
    assert fold_of[0::2] == fold_of[1::2]  # a patient's films share their fold
    assert all(len(outcome.candidates) <= 3 for outcome in outcomes)
    normal = normal_film_false_positives([replace(outcomes[0], masses=()), *outcomes[1:]], [1.0])
    assert normal["films"] == ["film_000", "film_002", "film_005"]  # every third film is normal, and the one emptied
    assert normal["at"][0]["fp_per_film"] == 1.0
