"""Summary statistics of latency samples: the figures every benchmark row reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Steady-state latency in milliseconds; percentiles by linear interpolation (numpy's default)."""

    runs: int
    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float

    def to_dict(self) -> dict[str, float | int]:
        """Milliseconds rounded to microseconds: finer digits are noise."""
        return {key: round(value, 3) if isinstance(value, float) else value for key, value in asdict(self).items()}


def summarise(samples_ms: Sequence[float]) -> LatencyStats:
    """Statistics of at least one sample; std is the sample standard deviation (0 for a single run)."""
    values = np.asarray(samples_ms, np.float64)
    if values.size == 0:
        raise ValueError("no latency samples to summarise")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("latency samples must be finite and non-negative")
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return LatencyStats(
        runs=int(values.size),
        mean_ms=float(values.mean()),
        std_ms=float(values.std(ddof=1)) if values.size > 1 else 0.0,
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        min_ms=float(values.min()),
        max_ms=float(values.max()),
    )
