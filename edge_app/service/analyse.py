"""The analyse stage: bytes in, a typed `Analysis` out. The daemon, ``mammo-edge once`` and the benchmarks take any
`Analyser`; `ModelAnalyser` is the one backed by a model bundle (tests use a fake with the same shape).

An input the analyser refuses raises a `MammoEdgeError` whose ``stage`` and class name become the scan's failure.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from edge_app.decode import decode_bytes
from edge_app.errors import TooManyPixelsError
from edge_app.gradcam import overlay
from edge_app.model import EdgeModel, ModelIdentity
from edge_app.preprocess import pad_to_square, to_model_input

OVERLAY_SIDE = 512


@dataclass(frozen=True)
class Analysis:
    """One scan's answer, ready to be written."""

    sha256: str
    label: str
    probability: float
    logit: float
    overlay_png: bytes | None
    timings_ms: dict[str, float]


class Analyser(Protocol):
    @property
    def identity(self) -> ModelIdentity: ...

    def analyse(self, data: bytes) -> Analysis: ...


class ModelAnalyser:
    """Decode, preprocess, classify and (if the bundle has a Grad-CAM head) explain, with an `EdgeModel`."""

    def __init__(self, model: EdgeModel, max_pixels: int) -> None:
        self.model = model
        self.max_pixels = max_pixels

    @property
    def identity(self) -> ModelIdentity:
        return self.model.identity

    def analyse(self, data: bytes) -> Analysis:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        sha256 = hashlib.sha256(data).hexdigest()
        try:
            decoded = decode_bytes(data, self.max_pixels)
        except TooManyPixelsError as exc:
            raise TooManyPixelsError(
                f"{exc}; raise [ingest] max_pixels in the device config if such scans are expected"
            ) from exc
        timings["decode_ms"] = (time.perf_counter() - started) * 1000
        tick = time.perf_counter()
        pixels = to_model_input(decoded.pixels, self.model.manifest.preprocess)
        timings["preprocess_ms"] = (time.perf_counter() - tick) * 1000
        prediction = self.model.predict(pixels)
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
        return Analysis(sha256, prediction.label, prediction.probability, prediction.logit, png, timings)
