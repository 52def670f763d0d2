"""A fake analyser with the `Analyser` shape: fast, no model, deterministic. Content starting with ``BAD`` is refused
as the decoder would refuse it; anything else is "malignant" when its sha256 starts with a digit below 8."""

from __future__ import annotations

import hashlib

from edge_app.errors import UnsupportedFormatError
from edge_app.model import ModelIdentity
from edge_app.service.analyse import Analysis

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
OVERLAY = b"\x89PNG fake overlay"


class FakeAnalyser:
    def __init__(self) -> None:
        self.calls = 0

    @property
    def identity(self) -> ModelIdentity:
        return FAKE_IDENTITY

    def analyse(self, data: bytes) -> Analysis:
        self.calls += 1
        if data.startswith(b"BAD"):
            raise UnsupportedFormatError("unrecognised file format (fake)")
        sha256 = hashlib.sha256(data).hexdigest()
        probability = int(sha256[0], 16) / 16
        label = "malignant" if probability >= FAKE_IDENTITY.threshold else "benign"
        return Analysis(sha256, label, probability, 0.0, OVERLAY, {"invoke_ms": 1.0})
