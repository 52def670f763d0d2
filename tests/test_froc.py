"""The FROC a detector is judged by: the hit rule, the curve, and intervals that resample patients."""

from __future__ import annotations

import math

import pytest

from edge_app.detect import Candidate
from edge_app.errors import DataError
from edge_app.regions import Region
from mammo_train.froc import FilmOutcome, froc_points, score_films, sensitivity_at, threshold_at

MASS = Region("A", 100, 100, 20)


def _film(
    name: str, masses: tuple[Region, ...], *candidates: tuple[float, float, float], patient: str = ""
) -> FilmOutcome:
    marks = tuple(Candidate(Region("", x, y, 15), score) for x, y, score in candidates)
    return FilmOutcome(name, patient or name, masses, marks)


def test_a_candidate_hits_a_mass_when_its_centre_is_inside_the_circle_and_a_mass_counts_once() -> None:
    inside, on_the_edge, outside = (110, 105, 0.9), (120, 100, 0.8), (121, 100, 0.7)
    scored = score_films([_film("a", (MASS,), inside, on_the_edge, outside)])
    assert scored.mass_scores.tolist() == [0.9]  # the best of the two hits, once
    assert scored.false_scores.tolist() == [0.7]  # a second mark on the mass is no false positive; a miss is


def test_sensitivity_at_each_rate_is_the_best_any_threshold_reaches_within_it() -> None:
    films = [
        _film("a", (MASS,), (100, 100, 0.9), (400, 400, 0.95)),  # found at 0.9, behind a false alarm at 0.95
        _film("b", (MASS,), (100, 100, 0.3), (400, 400, 0.5)),  # found only at 0.3, behind a false alarm at 0.5
        _film("normal", (), (300, 300, 0.6), (50, 50, 0.2)),  # no mass: only false alarms, and it counts as a film
    ]
    scored = score_films(films)
    # thresholds 0.95 (1 FP / 3 films, 0 found), 0.9 (1/3, 1/2), 0.6 (2/3, 1/2), 0.5 (1, 1/2), 0.3 (1, 1), 0.2 (4/3, 1)
    assert sensitivity_at(scored, (0.25, 0.34, 1.0, 2.0)) == [0.0, 0.5, 1.0, 1.0]
    # the operating points: the lowest threshold within each rate (where that sensitivity is reached)
    assert [threshold_at(scored, rate) for rate in (0.25, 0.34, 1.0, 2.0)] == [math.inf, 0.9, 0.3, 0.2]


def test_a_mass_no_candidate_hits_is_never_found() -> None:
    scored = score_films([_film("a", (MASS,), (400, 400, 0.9)), _film("b", (MASS,), (100, 100, 0.1))])
    assert sensitivity_at(scored, (0.25, 4.0)) == [0.0, 0.5]


def test_the_interval_resamples_patients_whole_not_films() -> None:
    # patient A: ten films, every mass found; patient B: ten films, every mass missed. Drawing patients, a sample is
    # AA, AB or BB: sensitivity 1, 0.5 or 0, each extreme a quarter of the time, so the 95% interval is [0, 1].
    # Drawing films instead, twenty films would give an interval near 0.5 +- 0.2.
    found = [_film(f"a{i}", (MASS,), (100, 100, 0.9), patient="A") for i in range(10)]
    missed = [_film(f"b{i}", (MASS,), (400, 400, 0.1), patient="B") for i in range(10)]
    (point,) = froc_points(found + missed, fp_rates=(4.0,), rounds=400, seed=1)
    assert point.to_json() == {"fp_per_film": 4.0, "sensitivity": 0.5, "ci": [0.0, 1.0]}


def test_the_interval_holds_the_point_and_is_reproducible() -> None:
    films = [
        _film(
            f"f{i}", (MASS,), (100 + (i % 3) * 15, 100, 0.2 + 0.07 * i), (500, 500 - i, 0.05 * i), patient=f"p{i // 2}"
        )
        for i in range(12)
    ]
    points = froc_points(films, rounds=300, seed=3)
    assert [point.fp_per_film for point in points] == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert all(point.ci[0] <= point.sensitivity <= point.ci[1] for point in points)
    assert froc_points(films, rounds=300, seed=3) == points


def test_films_without_any_mass_give_no_curve() -> None:
    with pytest.raises(DataError, match="at least one film with a mass"):
        froc_points([_film("normal", (), (10, 10, 0.5))])
