"""Summary statistics of latency samples: the figures every benchmark row reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edge_app.errors import DataError


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
        raise DataError("no latency samples to summarise")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise DataError("latency samples must be finite and non-negative")
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


@dataclass(frozen=True)
class RowIdentity:
    """What a latency row measured: the key `compare` matches rows by, plus the file's size."""

    model: str
    architecture: str
    input_size: int
    role: str
    variant: str
    threads: int
    runtime: str
    size_mb: float


def latency_row(
    identity: RowIdentity,
    init_ms: float,
    first_ms: float,
    samples_ms: Sequence[float],
    peak_rss_mb: float | None,
    gmacs: float | None,
) -> dict[str, Any]:
    """The one row layout of every latency benchmark (TFLite and Keras): identity, start-up, statistics, samples."""
    stats = summarise(samples_ms)
    return {
        **asdict(identity),
        "size_mb": round(identity.size_mb, 2),
        "init_ms": round(init_ms, 2),
        "first_ms": round(first_ms, 2),
        **stats.to_dict(),
        "samples_ms": [round(value, 3) for value in samples_ms],
        "peak_rss_mb": None if peak_rss_mb is None else round(peak_rss_mb, 1),
        "gmacs": None if gmacs is None else round(gmacs, 4),
        "gmac_per_s": round(gmacs / (stats.p50_ms / 1000), 2) if gmacs is not None and stats.p50_ms > 0 else None,
    }
