"""Activation range estimators for int8 (`mammo_convert.int8` gathers the statistics and applies the ranges; no
TensorFlow here): the converter's global extremes, the mean of per-image extremes (OpenVINO NNCF's default), a
percentile, or the range with the least expected squared quantisation error, each from what the calibration images
showed of one activation (`TensorStatistics`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from mammo_convert.recipes import Int8Recipe

HISTOGRAM_BINS = 2048


@dataclass
class TensorStatistics:
    """What the calibration images showed of one activation: per-image extremes, a histogram over the global range
    (for the percentile and MSE estimators) and, for a weighted op's input, each channel's mean."""

    low: float
    high: float
    image_minima: list[float] = field(default_factory=list)
    image_maxima: list[float] = field(default_factory=list)
    histogram: NDArray[np.float64] = field(default_factory=lambda: np.zeros(HISTOGRAM_BINS))
    channel_sums: NDArray[np.float64] | None = None
    channel_count: int = 0

    def add(self, values: NDArray[np.float32], histogram: bool, channel_mean: bool) -> None:
        self.image_minima.append(float(values.min()))
        self.image_maxima.append(float(values.max()))
        if histogram and self.high > self.low:
            width = (self.high - self.low) / HISTOGRAM_BINS
            bins = np.clip(((values.ravel() - self.low) / width).astype(np.int64), 0, HISTOGRAM_BINS - 1)
            self.histogram += np.bincount(bins, minlength=HISTOGRAM_BINS)
        if channel_mean:
            channels = values.reshape(-1, values.shape[-1]).astype(np.float64)
            sums = channels.sum(axis=0)
            self.channel_sums = sums if self.channel_sums is None else self.channel_sums + sums
            self.channel_count += channels.shape[0]

    def channel_means(self) -> NDArray[np.float64]:
        assert self.channel_sums is not None and self.channel_count, "no channel means were collected"
        return np.asarray(self.channel_sums / self.channel_count, np.float64)

    def bin_centres(self) -> NDArray[np.float64]:
        width = (self.high - self.low) / HISTOGRAM_BINS
        return np.asarray(self.low + (np.arange(HISTOGRAM_BINS) + 0.5) * width, np.float64)


def estimate_range(statistics: TensorStatistics, recipe: Int8Recipe) -> tuple[float, float]:
    """One activation's range by `recipe`'s estimator; always contains 0 (the quantiser needs 0 exact) and never
    reaches beyond what was seen."""
    low, high = statistics.low, statistics.high
    if recipe.ranges == "mean":
        low, high = float(np.mean(statistics.image_minima)), float(np.mean(statistics.image_maxima))
    elif recipe.ranges == "percentile":
        low, high = _percentile_range(statistics, recipe.percentile)
    elif recipe.ranges == "mse":
        low, high = _mse_range(statistics)
    return min(low, 0.0), max(high, 0.0)


def _percentile_range(statistics: TensorStatistics, percentile: float) -> tuple[float, float]:
    """The values' `percentile` (and, for a tensor with negative values, the mirror one), to the histogram's bin."""
    cumulative = np.cumsum(statistics.histogram)
    if cumulative[-1] == 0:
        return statistics.low, statistics.high
    width = (statistics.high - statistics.low) / HISTOGRAM_BINS
    tail = (100.0 - percentile) / 100.0 * cumulative[-1]
    top = min(int(np.searchsorted(cumulative, cumulative[-1] - tail)), HISTOGRAM_BINS - 1)
    high = statistics.low + (top + 1) * width  # the upper edge of the bin that holds it
    low = statistics.low
    if low < 0:
        low += int(np.searchsorted(cumulative, tail, side="right")) * width  # the lower edge of its bin
    return low, high


MSE_STEPS = 40
"""Candidate ends per side for the MSE search: each end moved inwards in steps of 1/40 of its distance from 0, down to
a quarter of it."""


def _mse_range(statistics: TensorStatistics) -> tuple[float, float]:
    """The range that minimises the expected squared error of 8-bit quantisation over the histogram: a value inside
    rounds (error step^2 / 12), one outside clips to the end."""
    counts = statistics.histogram
    if counts.sum() == 0:
        return statistics.low, statistics.high
    centres, weights = statistics.bin_centres(), counts / counts.sum()
    shrink = np.linspace(1.0, 0.25, MSE_STEPS)
    highs = max(statistics.high, 0.0) * shrink
    lows = min(statistics.low, 0.0) * shrink if statistics.low < 0 else np.zeros(1)
    best, best_error = (statistics.low, statistics.high), np.inf
    for low in lows:
        steps = (highs - low) / 255.0  # one row per candidate high
        clipped = np.clip(centres[None, :], low, highs[:, None])
        inside = (centres[None, :] >= low) & (centres[None, :] <= highs[:, None])
        errors = np.where(inside, steps[:, None] ** 2 / 12.0, (centres[None, :] - clipped) ** 2) @ weights
        candidate = int(np.argmin(errors))
        if errors[candidate] < best_error:
            best, best_error = (float(low), float(highs[candidate])), float(errors[candidate])
    return best
