"""Regions the device proposes on a film: the bundle's detector run on the film's canvas (`edge_app.detect`), its
peaks read back as candidates in film pixels.

A film is proposed for only inside the detector's scope: its pixel spacing must be known (a DICOM header says it; a
PNG does not) and within the range the detector was trained on. Outside, the film gets no suggestions and the reason
says why, as a scan outside the classifier's scope gets ``needs_roi``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.decode import DecodedImage, Gray8
from edge_app.detect import Candidate, FilmFrame, candidates, frame_film
from edge_app.errors import BundleError
from edge_app.manifest import DetectorSpec, Manifest
from edge_app.model import get_output, set_input
from edge_app.runtime import Runtime, make_interpreter

SQUARE_PIXELS_TOLERANCE = 0.01
"""Row and column spacing may differ by this fraction and still be one spacing (scanners round them apart)."""


@dataclass(frozen=True)
class Proposal:
    """The detector's candidates on one film, highest score first, or why there are none (`reason`)."""

    candidates: tuple[Candidate, ...]
    reason: str | None
    detect_ms: float


def film_spacing(image: DecodedImage) -> float | None:
    """The film's one pixel spacing in mm, or None when its header gives none or its pixels are not square."""
    if image.pixel_spacing_mm is None:
        return None
    row, column = image.pixel_spacing_mm
    if abs(row - column) > SQUARE_PIXELS_TOLERANCE * max(row, column):
        return None
    return (row + column) / 2


def out_of_scope(image: DecodedImage, spec: DetectorSpec) -> str | None:
    """Why the detector must not look at this film, or None."""
    if image.pixel_spacing_mm is None:
        return "the film's pixel spacing is unknown (its file gives none): the detector works at a known spacing"
    spacing = film_spacing(image)
    if spacing is None:
        row, column = image.pixel_spacing_mm
        return f"the film's pixels are not square ({row:g} x {column:g} mm): the detector works at one spacing"
    if not spec.min_spacing_mm <= spacing <= spec.max_spacing_mm:
        return (
            f"the film's pixel spacing {spacing:g} mm is outside the {spec.min_spacing_mm:g}-{spec.max_spacing_mm:g} "
            "mm the detector was trained on"
        )
    return None


class FilmDetector:
    """The bundle's detector on one interpreter: a decoded film in, a `Proposal` out. `outputs` says which output
    is the ``heat`` map and which the ``log_radius`` (the manifest's file entry; the conversion's gate passes its
    own while it checks a file)."""

    def __init__(self, spec: DetectorSpec, name: str, outputs: dict[str, int], interpreter: Any) -> None:
        self.spec = spec
        self.name = name
        self.outputs = outputs
        self._interpreter = interpreter
        cells = spec.input.cells
        shape = tuple(int(value) for value in interpreter.get_input_details()[0]["shape"])
        if shape != (1, *spec.input.canvas, 1):
            raise BundleError(f"{name} takes input {shape} but the manifest's canvas is {spec.input.canvas}")
        for output in ("heat", "log_radius"):
            if output not in outputs:
                raise BundleError(f"{name} lists no {output!r} output in the manifest")
            position = outputs[output]
            found = tuple(int(v) for v in interpreter.get_output_details()[position]["shape"])
            if found[1:3] != cells:
                raise BundleError(f"{name} output {output!r} is {found}, the canvas makes {cells} cells")

    @classmethod
    def load(cls, bundle: Path, manifest: Manifest, runtime: Runtime, threads: int) -> FilmDetector | None:
        """The bundle's detector (its file verified with the manifest's), or None when the bundle has none."""
        found = manifest.detector_file()
        if found is None or manifest.detector is None:
            return None
        name, entry = found
        interpreter = make_interpreter(runtime, Path(bundle) / name, threads, entry.sha256)
        return cls(manifest.detector, name, entry.outputs, interpreter)

    def propose(self, image: DecodedImage, max_candidates: int, min_score: float) -> Proposal:
        started = time.perf_counter()
        reason = out_of_scope(image, self.spec)
        if reason is not None:
            return Proposal((), reason, 0.0)
        spacing = film_spacing(image)
        assert spacing is not None, "a film in scope has one spacing"
        canvas, frame = frame_film(image.pixels, spacing, self.spec.input)
        found = self.on_canvas(canvas, frame, max_candidates, min_score)
        return Proposal(tuple(found), None, (time.perf_counter() - started) * 1000)

    def on_canvas(self, canvas: Gray8, frame: FilmFrame, max_candidates: int, min_score: float) -> list[Candidate]:
        """The candidates on one canvas, mapped back to its film by `frame`."""
        set_input(self._interpreter, canvas.astype(np.float32)[np.newaxis, ..., np.newaxis])
        self._interpreter.invoke()
        heat = get_output(self._interpreter, self.outputs["heat"])[0, ..., 0]
        log_radius = get_output(self._interpreter, self.outputs["log_radius"])[0, ..., 0]
        radius = np.exp(np.minimum(log_radius, math.log(max(self.spec.input.canvas))))  # never past the canvas
        return candidates(heat, radius, frame, self.spec.input, max_candidates, min_score)
