"""The device's calibrated probability is defined for every logit (no overflow on sharp models)."""

from __future__ import annotations

import pytest

from edge_app.model import calibrated_probability


@pytest.mark.parametrize(("logit", "temperature", "expected"), [(0.0, 1.0, 0.5), (2.0, 2.0, 0.7310585786300049)])
def test_calibrated_probability_is_the_tempered_sigmoid(logit: float, temperature: float, expected: float) -> None:
    assert calibrated_probability(logit, temperature) == pytest.approx(expected)


def test_extreme_logits_saturate_instead_of_overflowing() -> None:
    assert calibrated_probability(-60.0, 0.05) == 0.0  # z = -1200: math.exp(1200) overflows
    assert calibrated_probability(60.0, 0.05) == 1.0
    assert calibrated_probability(-1.0, 0.05) == pytest.approx(2.06e-9, rel=1e-2)
