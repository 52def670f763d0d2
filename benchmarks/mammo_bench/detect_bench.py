"""``mammo-bench detect``: what the bundle's detector costs on a full-size film, against one classifier invoke, in one
run.

The film is a 16-bit DICOM mammogram, ``--rows`` x ``--columns`` (default 4096 x 3328, a full-field detector's
native size), with masses on it (`regions_bench.film_with_regions`) and the pixel spacing the detector was trained
at. A round times the path a film without regions takes on the device: decode, the detector's canvas (breast mask,
contrast, resampling), its invoke and the candidates (`FilmDetector.propose`); interleaved with it, one invoke of a
classifier on one patch (``--against``: another bundle, a 224 px one for the goal's figure; by default the same
bundle's). The goal is a ratio of at most 1. Peak memory comes from a child process of its own that loads the
detector, decodes the film and detects (``python -m mammo_bench.detect_bench``), as the daemon would add it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.decode import decode_bytes
from edge_app.errors import MeasurementError
from edge_app.manifest import load_manifest
from edge_app.model import EdgeModel
from edge_app.proposals import FilmDetector
from edge_app.regions import CropRule
from edge_app.runtime import load_runtime
from mammo_bench.child import run_json_child
from mammo_bench.machine import peak_rss_mb
from mammo_bench.regions_bench import film_with_regions
from mammo_bench.stats import summarise

MASSES = 2
MASS_PATCH_PX = 256  # about 2.6 cm at 0.1 mm: masses of a size the detector finds
MAX_CANDIDATES, MIN_SCORE = 4, 0.1  # the device's defaults ([regions] in the config)
CHILD_ROUNDS = 3


def detector_of(bundle: Path, runtime: str, threads: int) -> FilmDetector:
    """The bundle's detector, or a clear refusal when the bundle has none."""
    manifest = load_manifest(bundle)
    detector = FilmDetector.load(bundle, manifest, load_runtime(runtime), threads)
    if detector is None:
        raise MeasurementError(f"{bundle} has no detector: convert with `mammo-convert --detector RUN`")
    return detector


def full_film(detector: FilmDetector, rows: int, columns: int) -> bytes:
    """A 16-bit DICOM film of `rows` x `columns` at the detector's smallest trained spacing, with `MASSES` masses."""
    spacing = [detector.spec.min_spacing_mm] * 2
    film, _, _ = film_with_regions(
        MASSES, rows, columns, MASS_PATCH_PX, CropRule(), ImagerPixelSpacing=spacing, PixelSpacing=spacing
    )
    return film


def detect_once(detector: FilmDetector, film: bytes, max_pixels: int) -> dict[str, float]:
    """One film through decode and detection; milliseconds of each and in all."""
    started = time.perf_counter()
    decoded = decode_bytes(film, max_pixels)
    decoded_at = time.perf_counter()
    proposal = detector.propose(decoded, MAX_CANDIDATES, MIN_SCORE)
    if proposal.reason is not None:
        raise MeasurementError(f"the detector did not look at the film: {proposal.reason}")
    ended = time.perf_counter()
    return {
        "decode_ms": (decoded_at - started) * 1000,
        "propose_ms": (ended - decoded_at) * 1000,
        "total_ms": (ended - started) * 1000,
    }


def measure_detection(
    bundle: Path, against: Path, variant: str, runtime: str, threads: int, rows: int, columns: int, rounds: int
) -> dict[str, Any]:
    """Detection on a full film and one classifier invoke, `rounds` interleaved rounds each; the ratio of medians."""
    detector = detector_of(bundle, runtime, threads)
    classifier = EdgeModel.load(against, variant, runtime, threads, heatmaps=False)
    film = full_film(detector, rows, columns)
    max_pixels = rows * columns
    size = classifier.manifest.preprocess.input_size
    patch = np.random.default_rng(0).integers(0, 256, (size, size, 1), dtype=np.uint8)
    detect_once(detector, film, max_pixels)  # warm-up: first touches, caches
    classifier.predict(patch, heatmap=False)
    detection: dict[str, list[float]] = {"decode_ms": [], "propose_ms": [], "total_ms": []}
    invokes = []
    for _ in range(rounds):
        for name, value in detect_once(detector, film, max_pixels).items():
            detection[name].append(value)
        tick = time.perf_counter()
        classifier.predict(patch, heatmap=False)
        invokes.append((time.perf_counter() - tick) * 1000)
    medians = {name: summarise(values).p50_ms for name, values in detection.items()}
    invoke_ms = summarise(invokes).p50_ms
    memory = run_json_child(
        "mammo_bench.detect_bench",
        [str(bundle), str(rows), str(columns), str(threads), runtime],
        "the detector's memory probe",
    )
    return {
        "detector": detector.name,
        "film": {"rows": rows, "columns": columns, "bytes": len(film), "spacing_mm": detector.spec.min_spacing_mm},
        "against": {**classifier.identity.stamp(), "input_size": size},
        "rounds": rounds,
        "detection_ms": {name: round(value, 2) for name, value in medians.items()},
        "classifier_invoke_ms": round(invoke_ms, 3),
        "ratio": round(medians["total_ms"] / invoke_ms, 3),
        "peak_rss_mb": memory["peak_rss_mb"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """The memory child: load the detector, then decode and detect on a full film `CHILD_ROUNDS` times."""
    bundle, rows, columns, threads, runtime = (argv if argv is not None else sys.argv[1:])[:5]
    detector = detector_of(Path(bundle), runtime, int(threads))
    film = full_film(detector, int(rows), int(columns))
    for _ in range(CHILD_ROUNDS):
        detect_once(detector, film, int(rows) * int(columns))
    print(json.dumps({"peak_rss_mb": round(peak_rss_mb(), 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
