"""Metrics a radiologist would trust: scikit-learn's implementations, group-aware intervals, calibration.

Augmented copies of one mass are not independent samples, so the AUC's 95% interval is a *cluster* bootstrap:
groups (masses or patients) are resampled, not images. Temperature scaling is fitted on validation logits, and the
decision threshold is chosen on validation for a target sensitivity; both are then applied unchanged to test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar
from scipy.stats import rankdata
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    roc_auc_score,
    roc_curve,
)

from edge_app.errors import DataError

FloatArray = NDArray[np.float64]


def fit_temperature(logits: NDArray[Any], labels: NDArray[Any]) -> float:
    """The temperature T > 0 minimising validation cross-entropy of sigmoid(logit / T) against Platt's targets.

    Platt (1999) fits against (N+ + 1) / (N+ + 2) for malignant and 1 / (N- + 2) for benign instead of 1 and 0:
    on a perfectly separated validation split plain log-loss keeps falling as T -> 0 and would make the device's
    probabilities as sharp as the search allows; the targets keep them as sure as the split's size warrants. With
    many images they approach 0 and 1 and the fit is the usual one.
    """
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return 1.0
    positives = int(np.sum(labels == 1))
    negatives = labels.size - positives
    targets = np.where(labels == 1, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    logits = np.asarray(logits, np.float64)

    def loss(log_t: float) -> float:
        z = logits / math.exp(log_t)  # -log(sigmoid(z)) = logaddexp(0, -z): stable for any z
        return float(np.mean(targets * np.logaddexp(0, -z) + (1 - targets) * np.logaddexp(0, z)))

    result = minimize_scalar(loss, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
    return float(math.exp(result.x))


def threshold_for_sensitivity(probabilities: NDArray[Any], labels: NDArray[Any], target: float) -> float:
    """A threshold reaching `target` sensitivity on validation with the highest specificity there, with margin.

    The highest threshold that reaches the target sits on a malignant score; any threshold down to the highest
    benign score below it gives the same validation sensitivity and specificity. The midpoint of that gap is
    returned, so a well-separated validation split does not leave the threshold at the edge of the malignant
    cluster (where a slightly weaker malignant scan on the device would be called benign).
    """
    if not 0 < target <= 1:
        raise DataError(f"target sensitivity must be in (0, 1], got {target}")
    if len(np.unique(labels)) < 2:
        raise DataError("choosing a threshold needs both classes in the validation split")
    probabilities, labels = np.asarray(probabilities, np.float64), np.asarray(labels)
    _, tpr, thresholds = roc_curve(labels, probabilities, drop_intermediate=False)
    highest = float(min(thresholds[np.flatnonzero(tpr >= target)[0]], 1.0))
    below = probabilities[(labels == 0) & (probabilities < highest)]
    return (highest + float(below.max())) / 2 if below.size else highest / 2


def expected_calibration_error(probabilities: NDArray[Any], labels: NDArray[Any], bins: int = 10) -> float:
    """Count-weighted gap between confidence and frequency over equal-width bins (from sklearn's curve)."""
    probabilities = np.asarray(probabilities, np.float64)
    frequency, confidence = calibration_curve(labels, probabilities, n_bins=bins, strategy="uniform")
    edges = np.linspace(0, 1, bins + 1)
    counts = np.histogram(probabilities, bins=edges)[0]
    occupied = counts[counts > 0]
    return float(np.sum(occupied * np.abs(frequency - confidence)) / len(probabilities))


def rank_auc(labels: NDArray[Any], scores: NDArray[Any]) -> float:
    """ROC AUC as the Mann-Whitney statistic (average ranks, so a tie counts one half): what `roc_auc_score` gives,
    without its input checks, which a bootstrap's thousand resamples would pay for a thousand times."""
    ranks = rankdata(scores)
    positive = np.asarray(labels) == 1
    count_positive = int(positive.sum())
    count_negative = len(positive) - count_positive
    wins = float(ranks[positive].sum()) - count_positive * (count_positive + 1) / 2
    return wins / (count_positive * count_negative)


def bootstrap_auc_interval(
    probabilities: NDArray[Any], labels: NDArray[Any], groups: Sequence[str], rounds: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of ROC AUC, resampling whole groups with replacement."""
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    unique, inverse = np.unique(np.asarray(groups), return_inverse=True)
    members = [np.flatnonzero(inverse == index) for index in range(len(unique))]
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(rounds):
        chosen = np.concatenate([members[i] for i in rng.integers(0, len(unique), len(unique))])
        if len(np.unique(labels[chosen])) == 2:
            scores.append(rank_auc(labels[chosen], probabilities[chosen]))
    if not scores:
        return (math.nan, math.nan)
    low, high = np.percentile(scores, [2.5, 97.5])
    return (float(low), float(high))


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def binary_metrics(
    probabilities: NDArray[Any], labels: NDArray[Any], groups: Sequence[str], threshold: float, seed: int = 0
) -> dict[str, Any]:
    """Every figure the report shows for one set of predictions (None where a figure is undefined)."""
    probabilities, labels = np.asarray(probabilities, np.float64), np.asarray(labels, np.int64)
    predicted = (probabilities >= threshold).astype(np.int64)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(labels, predicted, labels=[0, 1]).ravel())
    both = len(np.unique(labels)) == 2
    return {
        "n_images": len(labels),
        "n_groups": len(set(groups)),
        "n_malignant": int(labels.sum()),
        "accuracy": float(accuracy_score(labels, predicted)),
        "roc_auc": float(roc_auc_score(labels, probabilities)) if both else None,
        "roc_auc_ci": list(bootstrap_auc_interval(probabilities, labels, groups, seed=seed)) if both else None,
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "brier": float(brier_score_loss(labels, probabilities, pos_label=1)),
        "ece": expected_calibration_error(probabilities, labels),
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "threshold": threshold,
    }


@dataclass(frozen=True)
class PeakInCircle:
    """How often the heatmap's peak lies within the mass's circle, how often a peak placed at random would (the
    circle's share of the image, on average), and the chance of doing at least as well at random: the upper tail of
    the Poisson-binomial law of hits when each image's peak lands in its circle with its own area share."""

    rate: float
    chance: float
    p_value: float


def chance_tail(hits: int, chances: NDArray[np.float64]) -> float:
    """P(at least `hits` successes) for independent trials with the given success probabilities (exact, by the
    distribution's recursion over trials)."""
    counts = np.zeros(len(chances) + 1)
    counts[0] = 1.0
    for chance in chances:
        counts[1:] = counts[1:] * (1 - chance) + counts[:-1] * chance
        counts[0] *= 1 - chance
    return float(min(1.0, counts[hits:].sum()))


def peak_in_circle(pairs: list[tuple[float, float]], size: int) -> PeakInCircle | None:
    """The figures for (distance of the peak from the centre, radius) pairs on `size`-pixel images."""
    if not pairs:
        return None
    distances, radii = np.array(pairs).T
    chances = np.minimum(1.0, np.pi * radii**2 / size**2)
    hits = distances <= radii
    return PeakInCircle(float(np.mean(hits)), float(np.mean(chances)), chance_tail(int(hits.sum()), chances))
