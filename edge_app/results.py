"""Analysing one scan and writing its result: shared by the daemon and ``mammo-edge once``.

``<stem>.json`` (schema in ``schemas/result.schema.json``) and ``<stem>.gradcam.png`` (the heatmap over the
scan) are written atomically, the PNG first, so a result JSON never points at a missing overlay.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_app.decode import decode_bytes
from edge_app.fsutil import atomic_write
from edge_app.gradcam import overlay
from edge_app.model import EdgeModel, Prediction
from edge_app.preprocess import pad_to_square, to_model_input

RESULT_SCHEMA_VERSION = 1
NOTICE = "Research software: NOT FOR CLINICAL USE. Not a medical device; do not use for diagnosis."
OVERLAY_SIDE = 512


@dataclass(frozen=True)
class Analysis:
    sha256: str
    prediction: Prediction
    overlay_png: bytes | None
    timings_ms: dict[str, float]


def result_schema() -> dict[str, Any]:
    text = resources.files("edge_app").joinpath("schemas/result.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def analyse(data: bytes, model: EdgeModel) -> Analysis:
    """Decode, preprocess, classify and (if the model has a head) explain one encoded scan."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    sha256 = hashlib.sha256(data).hexdigest()
    config = model.manifest.preprocess
    decoded = decode_bytes(data, config.max_pixels)
    timings["decode_ms"] = (time.perf_counter() - started) * 1000
    tick = time.perf_counter()
    pixels = to_model_input(decoded.pixels, config)
    timings["preprocess_ms"] = (time.perf_counter() - tick) * 1000
    prediction = model.predict(pixels)
    timings.update(prediction.timings_ms)
    png = None
    if prediction.heatmap is not None:
        tick = time.perf_counter()
        square = pad_to_square(decoded.pixels)
        side = min(OVERLAY_SIDE, square.shape[0])
        shown = np.asarray(cv2.resize(square, (side, side), interpolation=cv2.INTER_AREA), np.uint8)
        ok, encoded = cv2.imencode(".png", overlay(shown, prediction.heatmap))
        png = encoded.tobytes() if ok else None
        timings["overlay_ms"] = (time.perf_counter() - tick) * 1000
    return Analysis(sha256, prediction, png, timings)


def result_document(
    scan_id: str, input_name: str, analysis: Analysis, model: EdgeModel, heatmap: str | None, duplicate_of: str | None
) -> dict[str, Any]:
    prediction = analysis.prediction
    return {
        "schema": "mammo-edge/result",
        "schema_version": RESULT_SCHEMA_VERSION,
        "id": scan_id,
        "input": input_name,
        "sha256": analysis.sha256,
        "label": prediction.label,
        "probability": round(prediction.probability, 6),
        "logit": round(prediction.logit, 6),
        "threshold": model.manifest.threshold,
        "target_sensitivity": model.manifest.target_sensitivity,
        "model": model.identity,
        "heatmap": heatmap,
        "timings_ms": {key: round(value, 3) for key, value in analysis.timings_ms.items()},
        "created": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "duplicate_of": duplicate_of,
        "notice": NOTICE,
    }


def write_result(folder: Path, stem: str, document: dict[str, Any], overlay_png: bytes | None) -> Path:
    """The overlay first, then the JSON that names it; both atomic. Returns the JSON path."""
    if overlay_png is not None:
        atomic_write(folder / f"{stem}.gradcam.png", overlay_png)
    target = folder / f"{stem}.json"
    atomic_write(target, (json.dumps(document, indent=2) + "\n").encode())
    return target
