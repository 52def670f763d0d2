"""The int8 recipes and range estimators (no TensorFlow: `test_int8_convert.py` has the conversions)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_app.errors import DataError
from mammo_convert.ranges import HISTOGRAM_BINS, TensorStatistics, estimate_range
from mammo_convert.recipes import CONVERTERS_OWN, DEFAULT_RECIPE, REPAIR_ORDER, Int8Recipe, repair_recipes


def _statistics(values: np.ndarray, images: int = 4) -> TensorStatistics:
    statistics = TensorStatistics(float(values.min()), float(values.max()))
    for part in np.array_split(values, images):
        statistics.add(part.astype(np.float32), histogram=True, channel_mean=False)
    return statistics


def test_recipes_name_a_bad_choice_and_the_repair_never_repeats_the_failed_one() -> None:
    with pytest.raises(DataError, match="unknown range method 'widest'"):
        Int8Recipe("widest")
    with pytest.raises(DataError, match="unknown bias correction 'all'"):
        Int8Recipe(bias="all")
    with pytest.raises(DataError, match=r"percentile must be in \(50, 100\], not 30"):
        Int8Recipe("percentile", percentile=30)
    with pytest.raises(DataError, match="unknown weight rounding 'adaround'"):
        Int8Recipe(rounding="adaround")
    with pytest.raises(DataError, match="unknown logit precision 'int16'"):
        Int8Recipe(logit="int16")
    assert DEFAULT_RECIPE not in repair_recipes(DEFAULT_RECIPE)
    assert repair_recipes(CONVERTERS_OWN) == [recipe for recipe in REPAIR_ORDER if recipe != CONVERTERS_OWN]
    assert Int8Recipe("percentile", "off", 99.9, logit="int8").label == "ranges percentile 99.9, bias correction off"
    gptq = Int8Recipe("minmax", rounding="gptq")
    assert gptq.label == "ranges minmax, bias correction off, GPTQ rounding, logit in float"
    assert gptq.to_dict() == {"ranges": "minmax", "bias": "off", "rounding": "gptq", "logit": "float"}
    assert DEFAULT_RECIPE.to_dict() == {"ranges": "mse", "bias": "off", "logit": "float"}
    # Results written before rounding and the logit's precision could be chosen read the same: nearest, int8.
    assert CONVERTERS_OWN.to_dict() == {"ranges": "minmax", "bias": "off"}


def test_a_rare_outlier_narrows_the_mse_and_percentile_ranges_but_not_minmax() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([np.abs(rng.normal(0, 1, 200_000)), [40.0]])  # a ReLU output with one far value
    statistics = _statistics(values)
    assert estimate_range(statistics, Int8Recipe("minmax")) == (0.0, pytest.approx(40.0))
    low, high = estimate_range(statistics, Int8Recipe("mse"))
    assert low == 0.0 and np.percentile(values, 99.99) < high < 36.0  # some clipping of one value: finer steps

    def expected_error(top: float) -> float:
        rounded = np.clip(np.rint(values / (top / 255)) * (top / 255), 0, top)
        return float(np.mean((rounded - values) ** 2))

    assert expected_error(high) < expected_error(40.0)
    low, high = estimate_range(statistics, Int8Recipe("percentile", percentile=99.9))
    assert low == 0.0 and high == pytest.approx(np.percentile(values, 99.9), abs=40.0 / HISTOGRAM_BINS)
    low, high = estimate_range(statistics, Int8Recipe("mean"))  # the outlier is in one image of four
    assert low == 0.0 and high == pytest.approx(np.mean([part.max() for part in np.array_split(values, 4)]))


def test_a_signed_range_keeps_zero_and_narrows_both_ends() -> None:
    values = np.random.default_rng(1).normal(2.0, 1.0, 100_000)
    values[:2] = (-30.0, 30.0)
    low, high = estimate_range(_statistics(values), Int8Recipe("mse"))
    assert -30.0 < low <= 0.0 and 0.0 < high < 30.0
    positive = _statistics(np.random.default_rng(2).uniform(1.0, 2.0, 10_000))
    assert estimate_range(positive, Int8Recipe("mean"))[0] == 0.0  # the quantiser needs 0 exactly representable
