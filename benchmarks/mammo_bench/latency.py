"""``mammo-bench latency``: every model file of a bundle at each thread count, timed interleaved.

Each round invokes every case once (A B C A B C ...), so thermal throttling, frequency scaling and other load hit
all of them equally; a round stops early at ``max_seconds``. Rows follow the interface in ``benchmarks/README.md``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_app.errors import DataError
from edge_app.manifest import Manifest
from edge_app.runtime import Runtime
from mammo_bench.memory import model_peak_rss_mb
from mammo_bench.progress import progress
from mammo_bench.runners import Case, TimedInterpreter, start
from mammo_bench.stats import RowIdentity, latency_row


def bundle_cases(manifest: Manifest, variants: Sequence[str], threads: Sequence[int]) -> list[Case]:
    """The classifier of each requested variant the bundle has, and the Grad-CAM head, at each thread count."""
    files = []
    for variant in variants:
        if variant in manifest.variants:
            name, _ = manifest.classifier(variant)
            files.append((name, "classifier", variant))
    if not files:
        raise DataError(f"the bundle has none of the variants {', '.join(variants)} (has {manifest.variants})")
    head = [(name, entry.role, entry.variant) for name, entry in manifest.files.items() if entry.role == "gradcam_head"]
    return [Case(name, role, variant, count) for count in threads for name, role, variant in files + head]


def run_interleaved(
    timed: list[TimedInterpreter], warmup: int, runs: int, max_seconds: float
) -> dict[Case, list[float]]:
    """Warm up, then `runs` rounds of one invoke per case (fewer if `max_seconds` runs out)."""
    for _ in range(warmup):
        for entry in timed:
            entry.invoke()
    samples: dict[Case, list[float]] = {entry.case: [] for entry in timed}
    deadline = time.monotonic() + max_seconds
    for _ in progress(range(runs), runs, "rounds"):
        for entry in timed:
            samples[entry.case].append(entry.invoke())
        if time.monotonic() > deadline:
            break
    return samples


def row(
    entry: TimedInterpreter, samples: list[float], runtime: Runtime, manifest: Manifest, rss_mb: float | None
) -> dict[str, Any]:
    identity = RowIdentity(
        model=entry.case.model,
        architecture=manifest.architecture,
        input_size=manifest.preprocess.input_size,
        role=entry.case.role,
        variant=entry.case.variant,
        threads=entry.case.threads,
        runtime=runtime.label,
        size_mb=manifest.files[entry.case.model].size_bytes / 1e6,
    )
    return latency_row(identity, entry.init_ms, entry.first_ms, samples, rss_mb, entry.macs / 1e9)


def measure_latency(
    bundle: Path,
    manifest: Manifest,
    runtime: Runtime,
    cases: list[Case],
    warmup: int,
    runs: int,
    max_seconds: float,
    memory: bool = True,
) -> list[dict[str, Any]]:
    """One row per case; `memory` adds each model's own peak RSS from a child process (else the row has None)."""
    timed = [start(case, bundle, runtime) for case in cases]
    samples = run_interleaved(timed, warmup, runs, max_seconds)
    rows = []
    for entry in timed:
        rss = model_peak_rss_mb(bundle / entry.case.model, entry.case.threads, runtime.name) if memory else None
        rows.append(row(entry, samples[entry.case], runtime, manifest, rss))
    return rows
