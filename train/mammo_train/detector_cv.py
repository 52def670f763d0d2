"""The detector measured honestly: K-fold cross-validation grouped by patient on the real films (no film of a test
patient is ever seen in training; the synthetic films, other patients by construction, join every fold's training),
each fold's candidates pooled into one FROC with intervals from a bootstrap over patients, the normal films' false
positives reported apart, and the report and its plot written where the README and the model card quote them."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from edge_app.detect import Candidate, DetectorInput
from mammo_train.detector import detect, train_detector
from mammo_train.detector_data import Canvas, DetectorSettings, FilmTruth, describe, load_canvas, patient_folds
from mammo_train.froc import FP_RATES, HIT_RULE, FilmOutcome, FrocPoint, curve, froc_points, score_films, threshold_at


@dataclass(frozen=True)
class FoldResult:
    fold: int
    train_films: int
    test_films: int
    test_patients: int
    seconds: float


def outcome(canvas: Canvas, found: Sequence[Candidate]) -> FilmOutcome:
    """A film's truth and candidates, as the FROC scores them."""
    truth = canvas.truth
    return FilmOutcome(truth.path.stem, truth.patient, truth.masses, tuple(found))


def cross_validate(
    films: Sequence[FilmTruth],
    extra: Sequence[FilmTruth],
    spec: DetectorInput,
    settings: DetectorSettings,
    folds: int,
    log: bool = False,
) -> tuple[list[FilmOutcome], list[FoldResult], list[int]]:
    """Every film of `films` answered by the detector trained without its patient's films (plus all of `extra`);
    the folds' figures, and each film's fold."""
    canvases = [load_canvas(film, spec) for film in films]
    extra_canvases = [load_canvas(film, spec) for film in extra]
    fold_of = patient_folds(films, folds, settings.seed)
    outcomes: list[FilmOutcome | None] = [None] * len(films)
    results = []
    for fold in range(folds):
        started = time.monotonic()
        test = [index for index, value in enumerate(fold_of) if value == fold]
        train = [canvases[index] for index, value in enumerate(fold_of) if value != fold] + extra_canvases
        model, _ = train_detector(train, spec, settings)
        found = detect(model, [canvases[index] for index in test], spec, settings.max_candidates, settings.min_score)
        for index, candidates in zip(test, found, strict=True):
            outcomes[index] = outcome(canvases[index], candidates)
        seconds = round(time.monotonic() - started, 1)
        patients = len({films[index].patient for index in test})
        results.append(FoldResult(fold, len(train), len(test), patients, seconds))
        if log:
            print(f"fold {fold + 1}/{folds}: trained on {len(train)} films, tested {len(test)} ({seconds} s)")
    return [item for item in outcomes if item is not None], results, fold_of


def normal_film_false_positives(outcomes: Sequence[FilmOutcome], fp_rates: Sequence[float]) -> dict[str, Any]:
    """False positives per normal film at each operating point of the pooled curve (its score threshold)."""
    normal = [item for item in outcomes if not item.masses]
    scored = score_films(outcomes)
    per_rate = []
    for rate in fp_rates:
        threshold = threshold_at(scored, rate)
        marks = sum(candidate.score >= threshold for item in normal for candidate in item.candidates)
        per_rate.append(
            {"fp_per_film": rate, "threshold": threshold, "normal_fp_per_film": marks / max(1, len(normal))}
        )
    return {"films": [item.film for item in normal], "at": per_rate}


def report(
    outcomes: Sequence[FilmOutcome],
    films: Sequence[FilmTruth],
    left_out: dict[str, str],
    folds: Sequence[FoldResult],
    fold_of: Sequence[int],
    spec: DetectorInput,
    settings: DetectorSettings,
    command: str,
) -> dict[str, Any]:
    points = froc_points(outcomes, FP_RATES, seed=settings.seed)
    return {
        "data": describe(films, left_out),
        "grouped_by": "patient",
        "folds": len(folds),
        "fold_results": [vars(fold) for fold in folds],
        "hit_rule": HIT_RULE,
        "points": [point.to_json() for point in points],
        "normal_films": normal_film_false_positives(outcomes, FP_RATES),
        "detector_input": spec.to_dict(),
        "settings": settings.to_dict(),
        "machine": platform.machine(),
        "command": command,
        "candidates": [
            {
                "film": item.film,
                "patient": item.patient,
                "fold": fold,
                "masses": [[mass.cx, mass.cy, mass.radius] for mass in item.masses],
                "candidates": [
                    [round(c.region.cx, 1), round(c.region.cy, 1), round(c.region.radius, 1), round(c.score, 4)]
                    for c in item.candidates
                ],
            }
            for item, fold in zip(outcomes, fold_of, strict=True)
        ],
    }


def plot_froc(outcomes: Sequence[FilmOutcome], points: Sequence[FrocPoint], title: str, path: Path) -> None:
    rates, sensitivities = curve(score_films(outcomes))
    figure, axes = plt.subplots(figsize=(5.5, 4))
    axes.step(rates, sensitivities, where="post", label="pooled over the folds")
    at = np.array([point.fp_per_film for point in points])
    value = np.array([point.sensitivity for point in points])
    low = value - np.array([point.ci[0] for point in points])
    high = np.array([point.ci[1] for point in points]) - value
    axes.errorbar(at, value, yerr=[low, high], fmt="o", capsize=3, label="95% interval (patients resampled)")
    axes.set(xscale="log", xlim=(0.1, 8), ylim=(0, 1.02), xlabel="false positives per film", ylabel="sensitivity")
    axes.set_xticks(list(FP_RATES), [f"{rate:g}" for rate in FP_RATES])
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.set_title(title, fontsize=10)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(values: dict[str, Any], outcomes: Sequence[FilmOutcome], json_path: Path, title: str) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(values, indent=1) + "\n")
    points = [FrocPoint(p["fp_per_film"], p["sensitivity"], tuple(p["ci"])) for p in values["points"]]
    plot_froc(outcomes, points, title, json_path.with_suffix(".png"))
