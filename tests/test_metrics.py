"""Metric helpers: temperature, threshold, calibration error, group bootstrap, cross-source selection."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="metrics need the train extra")

from edge_app.model import calibrated_probabilities
from mammo_train.metrics import (
    binary_metrics,
    bootstrap_auc_interval,
    expected_calibration_error,
    fit_temperature,
    threshold_for_sensitivity,
)
from mammo_train.runfiles import select_sources
from mammo_train.splits import SplitRow


def test_temperature_undoes_overconfidence() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 4000)
    labels = (rng.random(4000) < calibrated_probabilities(true_logits, 1.0)).astype(int)
    assert fit_temperature(true_logits * 3.0, labels) == pytest.approx(3.0, rel=0.15)


def test_temperature_of_a_separated_split_stays_finite() -> None:
    """Plain log-loss would drive T to its lower bound; Platt's targets stop where p = (N + 1) / (N + 2)."""
    logits = np.concatenate([np.full(20, -10.0), np.full(20, 10.0)])
    labels = np.repeat([0, 1], 20)
    expected = 10.0 / math.log(21.0)  # sigmoid(10 / T) = 21 / 22
    assert fit_temperature(logits, labels) == pytest.approx(expected, rel=1e-3)


def test_threshold_reaches_target_sensitivity() -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 200)
    scores = np.concatenate([rng.normal(0.3, 0.15, 200), rng.normal(0.7, 0.15, 200)])
    threshold = threshold_for_sensitivity(scores, labels, 0.9)
    sensitivity = (scores[labels == 1] >= threshold).mean()
    assert sensitivity >= 0.9
    # as specific as the highest threshold reaching the target, and in the middle of the gap that allows it
    highest = np.sort(scores[labels == 1])[::-1][int(np.ceil(0.9 * 200)) - 1]
    assert (scores[labels == 0] >= threshold).mean() == (scores[labels == 0] >= highest).mean()
    gap_low = scores[(labels == 0) & (scores < highest)].max()
    assert threshold == pytest.approx((highest + gap_low) / 2)


def test_threshold_keeps_a_margin_when_validation_separates_perfectly() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    scores = np.array([0.01, 0.02, 0.05, 0.90, 0.95, 0.96, 0.97, 0.97, 0.98, 0.98, 0.99, 0.99, 0.99])
    assert threshold_for_sensitivity(scores, labels, 0.9) == pytest.approx((0.95 + 0.05) / 2)


def test_ece_zero_for_perfect_calibration_and_large_when_wrong() -> None:
    probabilities = np.repeat([0.2, 0.8], 1000)
    labels = np.concatenate([np.r_[np.ones(200), np.zeros(800)], np.r_[np.ones(800), np.zeros(200)]])
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.0, abs=1e-9)
    assert expected_calibration_error(1 - probabilities, labels) == pytest.approx(0.6, abs=1e-9)


def test_group_bootstrap_is_wider_than_image_bootstrap_for_copies() -> None:
    """Ten copies of each mass are one sample, not ten: the interval must reflect that."""
    rng = np.random.default_rng(2)
    masses = 30
    labels = np.repeat(rng.permutation(np.repeat([0, 1], masses // 2)), 10)
    scores = np.repeat(rng.random(masses), 10) * 0.5 + labels * 0.3
    groups = [f"m{i}" for i in np.repeat(np.arange(masses), 10)]
    grouped = bootstrap_auc_interval(scores, labels, groups, rounds=400)
    naive = bootstrap_auc_interval(scores, labels, [str(i) for i in range(len(labels))], rounds=400)
    assert grouped[1] - grouped[0] > 1.5 * (naive[1] - naive[0])


def test_binary_metrics_match_the_confusion_matrix() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    probabilities = np.array([0.1, 0.6, 0.2, 0.9, 0.4, 0.7, 0.8])
    metrics = binary_metrics(probabilities, labels, [str(i) for i in range(7)], threshold=0.5)
    assert metrics["confusion_matrix"] == [[2, 1], [1, 3]]
    assert metrics["sensitivity"] == pytest.approx(3 / 4) and metrics["specificity"] == pytest.approx(2 / 3)
    assert metrics["ppv"] == pytest.approx(3 / 4) and metrics["npv"] == pytest.approx(2 / 3)


def _row(source: str, split: str, name: str) -> SplitRow:
    return SplitRow(Path(f"/{source}/{name}.png"), 0, source, f"{source}/{name}", split, "0" * 64)


def test_cross_source_selection() -> None:
    rows = [_row(s, split, f"{s}{split}") for s in ("DDSM", "INbreast", "MIAS") for split in ("train", "val", "test")]
    chosen = select_sources(rows, ("DDSM",), ("INbreast",))
    assert {(r.source, r.split) for r in chosen} == {("DDSM", "train"), ("DDSM", "val"), ("INbreast", "test")}
    assert sum(r.source == "INbreast" for r in chosen) == 3  # every INbreast image is test
    with pytest.raises(ValueError, match="both trained and tested"):
        select_sources(rows, ("DDSM",), ("DDSM",))
    with pytest.raises(ValueError, match="not in the split"):
        select_sources(rows, ("CBIS",), ())
    assert select_sources(rows, (), ()) == rows


def test_the_chance_of_peaks_in_circles_is_the_poisson_binomial_tail() -> None:
    """Equal chances give the binomial tail; unequal ones the exact Poisson-binomial one; a peak at the centre of a
    circle covering a tenth of the image is a hit, one outside it a miss."""
    from scipy.stats import binom

    from mammo_train.metrics import chance_tail, peak_in_circle

    assert chance_tail(7, np.full(20, 0.3)) == pytest.approx(binom.sf(6, 20, 0.3), rel=1e-12)
    assert chance_tail(0, np.array([0.2, 0.9])) == pytest.approx(1.0)
    assert chance_tail(2, np.array([0.2, 0.9])) == pytest.approx(0.18)
    assert chance_tail(1, np.array([0.2, 0.9])) == pytest.approx(1 - 0.8 * 0.1)
    radius = math.sqrt(0.1 * 100**2 / math.pi)
    figures = peak_in_circle([(0.0, radius), (2 * radius, radius)], 100)
    assert figures is not None and figures.rate == 0.5 and figures.chance == pytest.approx(0.1)
    assert figures.p_value == pytest.approx(1 - 0.9**2)
    assert peak_in_circle([], 100) is None


def test_the_rank_auc_is_scikit_learns_auc_ties_and_all() -> None:
    from sklearn.metrics import roc_auc_score

    from mammo_train.metrics import rank_auc

    rng = np.random.default_rng(4)
    for size in (2, 7, 40, 300):
        labels = rng.integers(0, 2, size)
        labels[:2] = [0, 1]
        scores = np.round(rng.random(size), 1)  # coarse: many ties
        assert rank_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
