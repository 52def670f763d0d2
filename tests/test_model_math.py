"""The calibrated probability (the device's and training's one rule) is defined for every logit."""

from __future__ import annotations

import numpy as np
import pytest

from edge_app.model import calibrated_probabilities, calibrated_probability


@pytest.mark.parametrize(("logit", "temperature", "expected"), [(0.0, 1.0, 0.5), (2.0, 2.0, 0.7310585786300049)])
def test_calibrated_probability_is_the_tempered_sigmoid(logit: float, temperature: float, expected: float) -> None:
    assert calibrated_probability(logit, temperature) == pytest.approx(expected)


def test_extreme_logits_saturate_instead_of_overflowing() -> None:
    assert calibrated_probability(-60.0, 0.05) == 0.0  # z = -1200: math.exp(1200) overflows
    assert calibrated_probability(60.0, 0.05) == 1.0
    assert calibrated_probability(-1.0, 0.05) == pytest.approx(2.06e-9, rel=1e-2)


def test_arrays_of_sharp_logits_raise_no_floating_point_error() -> None:
    """Training calls the same rule on arrays: logits / a small temperature reach |z| > 709 without overflow."""
    with np.errstate(all="raise"):
        values = calibrated_probabilities(np.array([-2e4, -1.0, 0.0, 1.0, 2e4]), 0.05)
    assert values[0] == 0.0 and values[2] == 0.5 and values[-1] == 1.0
    assert values[1] == pytest.approx(1 - values[3]) and values[1] < 1e-8
