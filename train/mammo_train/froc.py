"""FROC of a mass detector, as CAD papers report it: sensitivity at fixed false positives per film.

The hit rule: a candidate whose centre lies inside a mass's circle (the truth's centre and radius) hits that mass.
A mass counts once however many candidates hit it, and a candidate that hits any mass is never a false positive
(a second mark on one mass is neither a find nor a false alarm). At a score threshold, sensitivity is the share of
masses hit by a candidate at or above it; false positives per film are the candidates at or above it that hit no
mass, over all films, normal films included. Sensitivity at a given rate is the best any threshold reaches without
exceeding that rate. The 95% intervals resample patients, not films: a patient's films are not independent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from edge_app.detect import Candidate
from edge_app.errors import DataError
from edge_app.regions import Region

FP_RATES = (0.25, 0.5, 1.0, 2.0, 4.0)
HIT_RULE = "a candidate's centre inside the mass's circle (its truth centre and radius); each mass counts once"


def _holds_centre_of(mass: Region, candidate: Region) -> bool:
    """The hit rule: `candidate`'s centre lies inside `mass`'s circle."""
    return (candidate.cx - mass.cx) ** 2 + (candidate.cy - mass.cy) ** 2 <= mass.radius**2


@dataclass(frozen=True)
class FilmOutcome:
    """One film's truth and the detector's candidates on it."""

    film: str
    patient: str
    masses: tuple[Region, ...]
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class Scored:
    """The films reduced to what the curve needs: each mass's best hitting score (-inf when none hits it) and each
    false candidate's score, with the film each belongs to."""

    mass_scores: NDArray[np.float64]
    mass_films: NDArray[np.int64]
    false_scores: NDArray[np.float64]
    false_films: NDArray[np.int64]
    films: int


@dataclass(frozen=True)
class FrocPoint:
    """Sensitivity at one false-positive rate, with its 95% interval over patients."""

    fp_per_film: float
    sensitivity: float
    ci: tuple[float, float]

    def to_json(self) -> dict[str, object]:
        return {"fp_per_film": self.fp_per_film, "sensitivity": self.sensitivity, "ci": list(self.ci)}


def score_films(outcomes: Sequence[FilmOutcome]) -> Scored:
    """Apply the hit rule to every film."""
    mass_scores: list[float] = []
    mass_films: list[int] = []
    false_scores: list[float] = []
    false_films: list[int] = []
    for index, outcome in enumerate(outcomes):
        best = [-math.inf] * len(outcome.masses)
        for candidate in outcome.candidates:
            hit = [number for number, mass in enumerate(outcome.masses) if _holds_centre_of(mass, candidate.region)]
            for number in hit:
                best[number] = max(best[number], candidate.score)
            if not hit:
                false_scores.append(candidate.score)
                false_films.append(index)
        mass_scores.extend(best)
        mass_films.extend([index] * len(best))
    return Scored(
        np.asarray(mass_scores, np.float64),
        np.asarray(mass_films, np.int64),
        np.asarray(false_scores, np.float64),
        np.asarray(false_films, np.int64),
        len(outcomes),
    )


def curve(scored: Scored) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(false positives per film, sensitivity) at every distinct score threshold, from the strictest down."""
    if scored.mass_scores.size == 0:
        raise DataError("a FROC needs at least one film with a mass")
    thresholds = _thresholds(scored)
    false_at = _false_at(scored, thresholds)
    mass_sorted = np.sort(scored.mass_scores)
    found_at = mass_sorted.size - np.searchsorted(mass_sorted, thresholds, side="left")
    rates = np.concatenate([[0.0], false_at / scored.films])
    sensitivities = np.concatenate([[0.0], found_at / mass_sorted.size])
    return rates, sensitivities


def _thresholds(scored: Scored) -> NDArray[np.float64]:
    """Every distinct finite score, strictest first."""
    thresholds = np.unique(np.concatenate([scored.mass_scores, scored.false_scores]))[::-1]
    return np.asarray(thresholds[np.isfinite(thresholds)], np.float64)


def _false_at(scored: Scored, thresholds: NDArray[np.float64]) -> NDArray[np.int64]:
    """False positives at or above each threshold."""
    false_sorted = np.sort(scored.false_scores)
    return false_sorted.size - np.searchsorted(false_sorted, thresholds, side="left")


def threshold_at(scored: Scored, rate: float) -> float:
    """The operating point of `rate`: the lowest score threshold whose false positives per film stay at or below it
    (where `sensitivity_at` is reached); infinity if even the strictest exceeds it."""
    thresholds = _thresholds(scored)
    within = thresholds[_false_at(scored, thresholds) / scored.films <= rate]
    return float(within.min()) if within.size else math.inf


def sensitivity_at(scored: Scored, fp_rates: Sequence[float] = FP_RATES) -> list[float]:
    """The best sensitivity reached at or below each false-positive rate."""
    rates, sensitivities = curve(scored)
    return [float(sensitivities[rates <= rate].max()) for rate in fp_rates]


def _by_film(scored: Scored) -> list[tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """Each film's mass scores and false candidates' scores, so a bootstrap can draw films whole."""
    return [
        (scored.mass_scores[scored.mass_films == film], scored.false_scores[scored.false_films == film])
        for film in range(scored.films)
    ]


def _drawn(by_film: list[tuple[NDArray[np.float64], NDArray[np.float64]]], films: NDArray[np.int64]) -> Scored:
    """The films drawn (with repeats, as a bootstrap draws them) as one set; film indices are no longer needed."""
    empty = np.empty(0, np.int64)
    mass_scores = np.concatenate([by_film[film][0] for film in films])
    false_scores = np.concatenate([by_film[film][1] for film in films])
    return Scored(mass_scores, empty, false_scores, empty, len(films))


def froc_points(
    outcomes: Sequence[FilmOutcome], fp_rates: Sequence[float] = FP_RATES, rounds: int = 1000, seed: int = 0
) -> list[FrocPoint]:
    """Sensitivity at each rate; the interval a 95% percentile bootstrap over patients."""
    scored = score_films(outcomes)
    point = sensitivity_at(scored, fp_rates)
    patients, of_film = np.unique([outcome.patient for outcome in outcomes], return_inverse=True)
    films_of = [np.flatnonzero(of_film == index) for index in range(len(patients))]
    by_film = _by_film(scored)
    rng = np.random.default_rng(seed)
    draws: list[list[float]] = []
    for _ in range(rounds):
        chosen = np.concatenate([films_of[i] for i in rng.integers(0, len(patients), len(patients))])
        sample = _drawn(by_film, chosen)
        if sample.mass_scores.size:
            draws.append(sensitivity_at(sample, fp_rates))
    if not draws:
        raise DataError("no bootstrap draw held a mass: too few patients with masses for an interval")
    low, high = np.percentile(np.asarray(draws), [2.5, 97.5], axis=0)
    return [
        FrocPoint(rate, value, (float(low[i]), float(high[i])))
        for i, (rate, value) in enumerate(zip(fp_rates, point, strict=True))
    ]
