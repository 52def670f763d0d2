"""``mammo-bench keras``: the float Keras model's latency on the same inputs as the TFLite rows (workstation only).

TensorFlow fixes its thread pools when it starts, so each thread count runs in a child process of its own
(``python -m mammo_bench.keras_bench RUN_DIR THREADS WARMUP RUNS MAX_SECONDS`` prints one row as JSON;
``... heatmaps RUN_DIR REFERENCE.npz`` adds the Keras heatmaps to a latency run's fidelity reference). The row's
peak RSS is that child's, TensorFlow included. The child times ``model(x, training=False)`` under one traced
``tf.function``; its first call (tracing) is ``first_ms``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mammo_bench.child import run_json_child
from mammo_bench.machine import peak_rss_mb
from mammo_bench.runners import SEED
from mammo_bench.stats import RowIdentity, latency_row


def keras_rows(run: Path, threads: Sequence[int], warmup: int, runs: int, max_seconds: float) -> list[dict[str, Any]]:
    """One row per thread count, each from a fresh child process."""
    return [
        run_json_child(
            "mammo_bench.keras_bench",
            [str(run), str(count), str(warmup), str(runs), str(max_seconds)],
            f"Keras benchmark of {run} at {count} threads",
        )
        for count in threads
    ]


def measure(run: Path, threads: int, warmup: int, runs: int, max_seconds: float) -> dict[str, Any]:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from mammo_train.runfiles import RunFiles

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    files = RunFiles(run)
    started = time.perf_counter()
    model = keras.models.load_model(files.model)
    init_ms = (time.perf_counter() - started) * 1000
    size = int(model.input.shape[1])
    pixels = np.random.default_rng(SEED).integers(0, 256, (1, size, size, 1)).astype(np.float32)
    infer = tf.function(lambda x: model(x, training=False))
    started = time.perf_counter()
    infer(pixels).numpy()
    first_ms = (time.perf_counter() - started) * 1000
    for _ in range(warmup):
        infer(pixels).numpy()
    samples: list[float] = []
    deadline = time.monotonic() + max_seconds
    for _ in range(runs):
        tick = time.perf_counter()
        infer(pixels).numpy()
        samples.append((time.perf_counter() - tick) * 1000)
        if time.monotonic() > deadline:
            break
    identity = RowIdentity(
        model=files.model.name,
        architecture=model.name,
        input_size=size,
        role="classifier",
        variant="keras-float32",
        threads=threads,
        runtime=f"tensorflow {tf.__version__}",
        size_mb=files.model.stat().st_size / 1e6,
    )
    return latency_row(identity, init_ms, first_ms, samples, peak_rss_mb(), gmacs=None)


def add_heatmaps(run: Path, reference: Path) -> int:
    """The Keras float model's fused Grad-CAM of a saved fidelity reference's images, added to its file."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from mammo_bench.fidelity import FidelityReference
    from mammo_train.explain import gradcam
    from mammo_train.runfiles import RunFiles

    saved = FidelityReference.load(reference)
    heatmaps = np.asarray(gradcam(keras.models.load_model(RunFiles(run).model), saved.images).fused, np.float32)
    FidelityReference(saved.images, saved.probabilities, heatmaps).save(reference)
    return len(heatmaps)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(argv if argv is not None else sys.argv[1:])
    if arguments[:1] == ["heatmaps"]:
        print(json.dumps({"heatmaps": add_heatmaps(Path(arguments[1]), Path(arguments[2]))}))
        return 0
    run, threads, warmup, runs, max_seconds = arguments[:5]
    print(json.dumps(measure(Path(run), int(threads), int(warmup), int(runs), float(max_seconds))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
