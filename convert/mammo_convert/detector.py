"""The detector's place in a bundle (``mammo-convert RUN --detector DETECTOR_RUN --detector-films FILMS``): the
trained detector (``mammo-train detector``) converted to int8 TFLite, and refused unless it proposes what the Keras
detector proposes.

Its gate runs both on the films given (their canvases, as the device makes them): **agreement**, the share of the
Keras detector's candidates (the ones a device shows: its default `max_candidates` and `min_score`) that the
converted file also proposes, within one heatmap cell; and the **FROC drop** at 1 false positive per film (the
Keras detector's sensitivity there minus the file's). An int8 file that misses either is left out and float32 is
tried; a float32 that misses too is no detector at all (the conversion stops, naming why).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from edge_app.config import RegionsSection
from edge_app.detect import Candidate, DetectorInput
from edge_app.errors import DataError
from edge_app.manifest import DetectorSpec
from edge_app.proposals import FilmDetector
from edge_app.runtime import load_runtime, make_interpreter
from mammo_convert.build import output_positions, representative_batches
from mammo_convert.export import to_tflite
from mammo_train.detector import detect
from mammo_train.detector_cv import outcome
from mammo_train.detector_data import Canvas, DetectorSettings, load_canvas, synthetic_films
from mammo_train.froc import score_films, sensitivity_at

OUTPUTS = ["heat", "log_radius"]  # the Keras detector's outputs, in order


@dataclass(frozen=True)
class DetectorLimits:
    min_agreement: float = 0.9
    max_froc_drop: float = 0.05


@dataclass(frozen=True)
class ConvertedDetector:
    """The detector file that passed its gate, where its outputs are, and the manifest's ``detector``."""

    name: str
    variant: str
    data: bytes
    outputs: dict[str, int]
    spec: DetectorSpec


def _matched(reference: Candidate, found: Sequence[Candidate], reach: float) -> bool:
    centre = (reference.region.cx, reference.region.cy)
    return any(math.dist((item.region.cx, item.region.cy), centre) <= reach for item in found)


def measure(
    canvases: Sequence[Canvas],
    reference: Sequence[Sequence[Candidate]],
    found: Sequence[Sequence[Candidate]],
    spec: DetectorInput,
    shown: RegionsSection,
) -> dict[str, Any]:
    """Agreement on what a device shows and the FROC drop at 1 false positive per film, `found` against `reference`
    (each a film's candidates, highest score first, in film pixels)."""
    agreed = total = 0
    for canvas, expected, got in zip(canvases, reference, found, strict=True):
        reach = spec.stride / canvas.frame.scale  # one heatmap cell, in film pixels
        visible = [item for item in expected if item.score >= shown.min_score][: shown.max_candidates]
        candidates_shown = [item for item in got if item.score >= shown.min_score][: shown.max_candidates]
        total += len(visible)
        agreed += sum(_matched(item, candidates_shown, reach) for item in visible)
    froc = [
        sensitivity_at(score_films([outcome(c, items) for c, items in zip(canvases, lists, strict=True)]), [1.0])[0]
        for lists in (reference, found)
    ]
    return {
        "films": len(canvases),
        "candidates_shown": total,
        "agreement": 1.0 if total == 0 else agreed / total,
        "sensitivity_at_1_fp": {"keras": froc[0], "tflite": froc[1]},
        "froc_drop_at_1_fp": froc[0] - froc[1],
    }


def failures(result: dict[str, Any], limits: DetectorLimits) -> list[str]:
    found = []
    if result["agreement"] < limits.min_agreement:
        found.append(f"candidate agreement {result['agreement']:.3f} < {limits.min_agreement}")
    if result["froc_drop_at_1_fp"] > limits.max_froc_drop:
        found.append(f"FROC drop at 1 FP/film {result['froc_drop_at_1_fp']:.3f} > {limits.max_froc_drop}")
    return found


def convert_detector(
    run: Path, films: Path, staging: Path, limits: DetectorLimits | None = None
) -> tuple[ConvertedDetector, dict[str, Any]]:
    """The detector of `run` converted and gated on the synthetic films in `films`; also the gate's report (every
    variant tried). DataError when no variant passes."""
    limits = limits or DetectorLimits()
    described = json.loads((run / "detector.json").read_text())
    spec = DetectorInput.from_dict(described["input"])
    low, high = described["scope"]["film_spacing_mm"]
    settings = DetectorSettings()  # what the detector was measured with: enough candidates for a FROC
    model = keras.models.load_model(run / "detector.keras")
    canvases = [load_canvas(film, spec) for film in synthetic_films(films)]
    if not canvases:
        raise DataError(f"{films} holds no films to calibrate and check the detector with")
    reference = detect(model, canvases, spec, settings.max_candidates, settings.min_score)
    images = np.stack([canvas.pixels[..., np.newaxis] for canvas in canvases])
    scope = DetectorSpec(spec, float(low), float(high), _froc(run))  # the gate's figures join it once one passes
    report: dict[str, Any] = {}
    for variant in ("int8", "float32"):
        name = f"detector_{variant}.tflite"
        data = to_tflite(model, variant, representative_batches(images) if variant == "int8" else None)
        (staging / name).write_bytes(data)
        positions = output_positions(staging / name, model, [images[:1].astype(np.float32)], OUTPUTS, variant != "int8")
        interpreter = make_interpreter(load_runtime("auto"), staging / name, threads=1)
        detector = FilmDetector(scope, name, positions, interpreter)
        found = [
            detector.on_canvas(canvas.pixels, canvas.frame, settings.max_candidates, settings.min_score)
            for canvas in canvases
        ]
        result = measure(canvases, reference, found, spec, RegionsSection())
        result["failures"] = failures(result, limits)
        report[variant] = result
        if not result["failures"]:
            passed = replace(scope, fidelity={"variant": variant, **result})
            return ConvertedDetector(name, variant, data, positions, passed), report
        (staging / name).unlink()
    reasons = "; ".join(f"{variant}: {', '.join(result['failures'])}" for variant, result in report.items())
    raise DataError(f"the detector misses its gate in every variant ({reasons}): no bundle with this detector")


def _froc(run: Path) -> dict[str, Any]:
    """The cross-validated FROC the detector's run measured (the model card's curve), when it has one."""
    path = run / "froc-mias.json"
    if not path.is_file():
        return {}
    values = json.loads(path.read_text())
    carried = ("grouped_by", "folds", "hit_rule", "data", "points")
    return {"source": path.name, **{key: values[key] for key in carried if key in values}}
