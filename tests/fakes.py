"""A fake analyser with the `Analyser` shape: fast, no model, deterministic. Content starting with ``BAD`` is refused
as the decoder would refuse it, content starting with ``FULL`` is a full-field film (``needs_roi`` without a sidecar);
a sidecar starting with ``BAD`` is refused as an invalid one, and any other sidecar gives one region per line. Each
answer is "malignant" when its sha256 starts with a digit of 8 or more."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import cv2
import numpy as np

from edge_app.errors import RegionError, UnsupportedFormatError
from edge_app.model import ModelIdentity
from edge_app.regions import Box
from edge_app.service.analyse import CLASSIFIED, NEEDS_ROI, Analysis, ImageFacts, Overlay, RegionAnswer, Sidecar

FAKE_IDENTITY = ModelIdentity(
    name="fake",
    version="0",
    architecture="none",
    variant="int8",
    file="fake.tflite",
    sha256="0" * 64,
    runtime="fake",
    threshold=0.5,
    target_sensitivity=0.9,
)
OVERLAY = bytes(cv2.imencode(".jpg", np.full((12, 20, 3), (40, 90, 160), np.uint8))[1].tobytes())
"""A real (tiny, one-colour) JPEG: the write stage makes the results page's thumbnail from its pixels."""
FACTS = ImageFacts("FAKE", 10, 10, None, None, None)
BOX = Box(0, 0, 10, 10)


class FakeAnalyser:
    def __init__(self) -> None:
        self.calls = 0
        self.sidecars: list[Sidecar | None] = []

    @property
    def identity(self) -> ModelIdentity:
        return FAKE_IDENTITY

    def prepare(self, data: bytes, name: str, sidecar: Sidecar | None = None) -> Callable[[], Analysis]:
        """The whole analysis at once, in the caller's thread (what the tests of the loop expect of a fake)."""
        analysis = self.analyse(data, name, sidecar)
        return lambda: analysis

    def analyse(self, data: bytes, name: str, sidecar: Sidecar | None = None) -> Analysis:
        self.calls += 1
        self.sidecars.append(sidecar)
        if data.startswith(b"BAD"):
            raise UnsupportedFormatError("unrecognised file format (fake)")
        sha256 = hashlib.sha256(data).hexdigest()
        if sidecar is not None and sidecar.data.startswith(b"BAD"):
            raise RegionError("region 'A': centre (5000, 5000) lies outside the 10x10 image (fake)")
        if sidecar is None and data.startswith(b"FULL"):
            return Analysis(sha256, NEEDS_ROI, FACTS, (), f"{name} is a full-field film (fake)", None, {})
        labels = sidecar.data.decode().split() if sidecar is not None else ["A"]
        marked_by, reader = (sidecar.marked_by, sidecar.reader) if sidecar is not None else ("none", None)
        answers = []
        for label in labels:
            digest = hashlib.sha256(data + label.encode()).hexdigest() if sidecar is not None else sha256
            probability = int(digest[0], 16) / 16
            decision = "malignant" if probability >= FAKE_IDENTITY.threshold else "benign"
            answers.append(RegionAnswer(label, "box", marked_by, reader, BOX, BOX, probability, 0.0, decision, (5, 5)))
        return Analysis(sha256, CLASSIFIED, FACTS, tuple(answers), None, Overlay.encoded(OVERLAY), {"invoke_ms": 1.0})
