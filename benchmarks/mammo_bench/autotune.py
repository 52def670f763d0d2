"""``mammo-bench autotune``: on the device itself, pick the fastest verified variant, runtime and thread count.

Every classifier variant in the bundle passed the fidelity gate, so speed decides; but which is fastest depends on
the CPU (int8 wins on Arm cores with dot-product instructions, ties float32 on AVX2 without VNNI) and on the runtime
(tflite-runtime 2.14 runs int8 about 3x slower than LiteRT here). So it is measured, never guessed: each
combination runs the product call, `EdgeModel.predict` with the heatmap, and the lowest median wins. A combination
the manifest records as failing under a runtime is listed with the reason and skipped.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.config import Config, ModelSection, resolve_config
from edge_app.errors import MammoEdgeError
from edge_app.fsutil import atomic_write
from edge_app.model import EdgeModel
from edge_app.runtime import Runtime
from mammo_bench.progress import progress
from mammo_bench.runners import SEED
from mammo_bench.stats import summarise


def thread_candidates(cores: int | None = None) -> list[int]:
    """1, 2, 4, ... up to the core count, and the core count itself."""
    cores = cores or os.cpu_count() or 1
    counts = {1, cores}
    count = 2
    while count < cores:
        counts.add(count)
        count *= 2
    return sorted(counts)


def measure_choices(
    bundle: Path, variants: list[str], runtimes: list[Runtime], threads: list[int], warmup: int, runs: int
) -> list[dict[str, Any]]:
    """One row per (runtime, variant, threads): p50/mean of predict-with-heatmap, or why it could not run."""
    rows: list[dict[str, Any]] = []
    combinations = [(runtime, variant, count) for runtime in runtimes for variant in variants for count in threads]
    for runtime, variant, count in progress(combinations, len(combinations), "combinations"):
        choice = {"runtime": runtime.name, "runtime_version": runtime.version, "variant": variant, "threads": count}
        try:
            model = EdgeModel.load(bundle, variant, runtime.name, count, heatmaps=True)
        except MammoEdgeError as exc:
            rows.append({**choice, "refused": str(exc)})
            continue
        size = model.manifest.preprocess.input_size
        pixels = np.random.default_rng(SEED).integers(0, 256, (size, size, 1)).astype(np.uint8)
        for _ in range(warmup):
            model.predict(pixels)
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            model.predict(pixels)
            samples.append((time.perf_counter() - started) * 1000)
        stats = summarise(samples)
        rows.append({**choice, "p50_ms": round(stats.p50_ms, 3), "mean_ms": round(stats.mean_ms, 3)})
    return rows


def fastest(rows: list[dict[str, Any]]) -> dict[str, Any]:
    measured = [row for row in rows if "p50_ms" in row]
    if not measured:
        reasons = "; ".join(str(row.get("refused")) for row in rows) or "nothing to measure"
        raise MammoEdgeError(f"no variant of the bundle runs here: {reasons}")
    return min(measured, key=lambda row: float(row["p50_ms"]))


def write_choice(config_file: Path, bundle: Path, choice: dict[str, Any]) -> Path | None:
    """Put the choice into the daemon's [model] section; an existing file is kept as FILE.bak first.

    Only the file's own values are carried over (the environment is not baked in), and the bundle becomes the one
    measured: the choice holds for it. Returns the backup path.
    """
    base = resolve_config(config_file, environ={}) if config_file.is_file() else Config()
    model: ModelSection = replace(
        base.model,
        bundle=bundle.resolve(),
        variant=str(choice["variant"]),
        runtime=str(choice["runtime"]),
        threads=int(choice["threads"]),
    )
    backup = None
    if config_file.is_file():
        backup = config_file.with_name(config_file.name + ".bak")
        shutil.copy2(config_file, backup)
    config_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(config_file, replace(base, model=model).to_toml().encode())
    return backup
