"""The analyse stage: a scan's bytes (and its region sidecar, if one came) in, a typed `Analysis` out. The daemon,
``mammo-edge once`` and the benchmarks take any `Analyser`; `ModelAnalyser` is the one backed by a model bundle
(tests use a fake with the same shape).

What is classified:
- a scan with a sidecar: each region, cut by the bundle's crop rule (`edge_app.regions`), one answer per region;
- a scan without one that is a patch like the training patches: the whole image, as one region;
- anything else (a full-field film): nothing. The analysis has the status ``needs_roi`` and the reason; with a
  detector in the bundle (`edge_app.proposals`) and ``[regions] propose = "suggest"`` it lists the detector's
  candidates as suggestions for the reader, and with ``"answer"`` it classifies each candidate as a region the
  device marked (``marked_by: "device"``).

An input the analyser refuses (undecodable, an invalid sidecar) raises a `MammoEdgeError` whose ``stage`` and class
name become the scan's failure.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_app.config import RegionsSection
from edge_app.decode import DecodedImage, Gray8, decode_bytes
from edge_app.detect import Candidate
from edge_app.dicomregions import seg_regions, sr_regions
from edge_app.errors import InputImageError, RegionError, TooManyPixelsError
from edge_app.gradcam import heat_on_scale, peak_location
from edge_app.model import EdgeModel, ModelIdentity, Prediction
from edge_app.overlay import RegionView, render, thumbnail_jpeg
from edge_app.preprocess import pad_to_square, to_model_input
from edge_app.proposals import FilmDetector
from edge_app.regions import Box, Region, crop_region, parse_sidecar, whole_image
from edge_app.scope import Measured, ScopeLimits, needs_roi_reason

CLASSIFIED = "classified"
BATCH_LIMIT = 8
"""Regions classified in one invoke at most: batching makes a region cheaper than a patch file (benchmarks/README.md,
N = 8), and the cap bounds the activations' memory, which grows with the batch (not yet measured on a 2 GB board)."""
NEEDS_ROI = "needs_roi"


MARKED_BY_KIND = {"roi": "file", "mask": "file", "seg": "seg", "sr": "sr"}
"""Who or what marked the regions of each kind of sidecar (a reader's submission is ``reader``)."""
MARKED_BY_NONE = "none"
"""A patch classified whole: nobody marked a region."""
MARKED_BY_DEVICE = "device"
"""A region the detector proposed and the device classified (``[regions] propose = "answer"``)."""


@dataclass(frozen=True)
class Sidecar:
    """The regions that came with a scan: their file's name as dropped (or as the device named a submission's), the
    kind (``roi``, ``mask``, ``seg``, ``sr``), the bytes, and the reader's account when a reader marked them."""

    name: str
    kind: str
    data: bytes
    reader: str | None = None

    @property
    def marked_by(self) -> str:
        return "reader" if self.reader else MARKED_BY_KIND[self.kind]


@dataclass(frozen=True)
class ImageFacts:
    """What was read of the scan itself (recorded in every result)."""

    format: str
    width: int
    height: int
    extent_mm: tuple[float, float] | None
    laterality: str | None
    view: str | None


@dataclass(frozen=True)
class Marker:
    """Who or what marked a scan's regions (`MARKED_BY_KIND`, ``reader`` or ``none``) and the reader's account."""

    by: str
    reader: str | None


@dataclass(frozen=True)
class RegionAnswer:
    """The model's answer for one region, in the scan's pixel coordinates."""

    label: str
    marked_as: str  # "circle", "box", "mask", "point", "ellipse", "polygon" or "whole image"
    marked_by: str  # "reader", "file", "seg", "sr", or "none" for a patch classified whole
    reader: str | None  # the reader's account, when a reader marked it
    box: Box  # the region as marked (clipped to the image)
    crop: Box  # the square the model saw (may reach beyond the image: black there)
    probability: float
    logit: float
    decision: str  # the bundle's label at its threshold
    heatmap_peak: tuple[int, int] | None  # where the Grad-CAM evidence peaks, scan pixels
    detector_score: float | None = None  # a region the device proposed: the detector's score for it


OVERLAY_JPEG = (cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444)
"""How the overlay file is encoded. It is a picture to look at (the evidence is in the result JSON and the DICOM
capture is made from the pixels themselves), so JPEG: a tenth of PNG's time (a film's 1112 x 1046 overlay: 3.7 ms
against 21) and a quarter of its size; quality 90 without chroma subsampling keeps the heat's colours and the
captions' edges (mean error half a grey level)."""


class Overlay:
    """An analysis's overlay picture, rendered when it is first asked for and JPEG-encoded when its file is: the
    daemon's write lane asks, so the work overlaps the next scan's invoke. Rendering and encoding add ``overlay_ms``
    to `timings` (the analysis's own)."""

    def __init__(self, render: Callable[[], NDArray[np.uint8]], timings: dict[str, float] | None = None) -> None:
        self._render = render
        self._timings = timings if timings is not None else {}
        self._pixels: NDArray[np.uint8] | None = None
        self._jpeg: bytes | None = None
        self._thumbnail: bytes | None = None

    @classmethod
    def encoded(cls, data: bytes) -> Overlay:
        """An overlay file already encoded (tests, fakes); its pixels are decoded from it when asked for."""

        def decoded() -> NDArray[np.uint8]:
            pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if pixels is None:
                raise InputImageError("the overlay's bytes are not a JPEG picture")
            return np.asarray(pixels, np.uint8)

        overlay = cls(decoded)
        overlay._jpeg = data
        return overlay

    def pixels(self) -> NDArray[np.uint8]:
        """The picture (BGR), rendered once."""
        if self._pixels is None:
            tick = time.perf_counter()
            self._pixels = self._render()
            _add(self._timings, "overlay_ms", (time.perf_counter() - tick) * 1000)
        return self._pixels

    def jpeg(self) -> bytes:
        """The overlay file's bytes, encoded once."""
        if self._jpeg is None:
            pixels = self.pixels()
            tick = time.perf_counter()
            ok, encoded = cv2.imencode(".jpg", pixels, OVERLAY_JPEG)
            if not ok:
                raise InputImageError("the overlay picture could not be encoded as JPEG")
            self._jpeg = encoded.tobytes()
            _add(self._timings, "overlay_ms", (time.perf_counter() - tick) * 1000)
        return self._jpeg

    def thumbnail(self) -> bytes:
        """The results page's thumbnail, made once from the pixels (decoding the JPEG again cost more than the
        overlay)."""
        if self._thumbnail is None:
            pixels = self.pixels()
            tick = time.perf_counter()
            self._thumbnail = thumbnail_jpeg(pixels)
            _add(self._timings, "overlay_ms", (time.perf_counter() - tick) * 1000)
        return self._thumbnail


@dataclass(frozen=True)
class Analysis:
    """One scan's answer, ready to be written."""

    sha256: str
    status: str  # CLASSIFIED or NEEDS_ROI
    image: ImageFacts
    regions: tuple[RegionAnswer, ...]
    reason: str | None  # why NEEDS_ROI
    overlay: Overlay | None
    timings_ms: dict[str, float]
    suggestions: tuple[Candidate, ...] = ()  # a film left needs_roi: where the detector proposes the reader look
    suggestions_reason: str | None = None  # why a film got no suggestions although the bundle has a detector
    pending: Callable[[], Analysis] | None = field(default=None, compare=False, repr=False)
    """Its explanations (each region's Grad-CAM peak, the overlay), when they were left for later: `completed`."""

    def completed(self) -> Analysis:
        """The analysis with its explanations, made now if they were left for later (the daemon's overlay lane makes
        them off the loop's lane; the writer asks again and gets the same analysis)."""
        return self if self.pending is None else self.pending()

    @property
    def overlay_jpeg(self) -> bytes | None:
        """The overlay file's bytes (rendered and encoded on first use), or None when there is no heat to show."""
        return None if self.overlay is None else self.overlay.jpeg()

    @property
    def most_suspicious(self) -> RegionAnswer | None:
        """The region with the highest probability: what a one-line summary (audit, status, tables) shows."""
        return max(self.regions, key=lambda answer: answer.probability, default=None)

    @property
    def label(self) -> str | None:
        top = self.most_suspicious
        return None if top is None else top.decision

    @property
    def probability(self) -> float | None:
        top = self.most_suspicious
        return None if top is None else top.probability


def summary(analysis: Analysis) -> str:
    """One line for logs and tables: each region's decision and probability, or why nothing was classified."""
    if analysis.status == NEEDS_ROI:
        return f"needs_roi ({analysis.image.width}x{analysis.image.height} px, no regions)"
    return ", ".join(f"{answer.label} {answer.decision} p={answer.probability:.3f}" for answer in analysis.regions)


class Digest:
    """A scan's sha256, computed on the second core while the scan is decoded and classified when the scan is large
    (a 2048 x 1664 film: 3.6 ms of hashing beside 2 ms of decoding; both release the GIL), in the caller's thread
    otherwise."""

    BESIDE_FROM_BYTES = 1 << 20

    def __init__(self, data: bytes) -> None:
        self._hex = ""
        self._thread: threading.Thread | None = None
        if len(data) < self.BESIDE_FROM_BYTES:
            self._hash(data)
        else:
            self._thread = threading.Thread(target=self._hash, args=(data,), name="scan-digest", daemon=True)
            self._thread.start()

    def _hash(self, data: bytes) -> None:
        self._hex = hashlib.sha256(data).hexdigest()

    def hexdigest(self) -> str:
        if self._thread is not None:
            self._thread.join()
        return self._hex


RegionCut = tuple[Region, str, Box, Box, Gray8]
"""A region to classify: as marked, how it was marked, its bounds, the square the model sees, that square's pixels."""


class Analyser(Protocol):
    @property
    def identity(self) -> ModelIdentity: ...

    def analyse(self, data: bytes, name: str, sidecar: Sidecar | None = None) -> Analysis: ...

    def prepare(self, data: bytes, name: str, sidecar: Sidecar | None = None) -> Callable[[], Analysis]:
        """Decode the scan and cut its regions now (their errors are raised here); the call returned classifies them
        (the daemon's inference lane makes it while the loop prepares the next scan). `analyse` is both at once."""
        ...


def image_facts(decoded: DecodedImage) -> ImageFacts:
    measured = Measured.of(decoded)
    return ImageFacts(
        decoded.format, measured.width_px, measured.height_px, measured.extent_mm, decoded.laterality, decoded.view
    )


class ModelAnalyser:
    """Decode, find the regions, guard the scope, classify each region and (if the bundle has a Grad-CAM head)
    explain it, with an `EdgeModel`."""

    def __init__(
        self,
        model: EdgeModel,
        max_pixels: int,
        limits: ScopeLimits,
        detector: FilmDetector | None = None,
        regions: RegionsSection | None = None,
        explain_later: bool = False,
    ) -> None:
        """`detector`: the bundle's (`FilmDetector.load`), used as `regions` (``[regions]``, default its defaults)
        says; without one a film is answered ``needs_roi`` with no suggestions. `explain_later`: an analysis leaves
        its Grad-CAM heatmaps and overlay to `Analysis.completed` (the daemon's overlay lane), so the thread that
        analyses goes on to the next scan's invoke."""
        self.model = model
        self.max_pixels = max_pixels
        self.limits = limits
        self.rule = model.manifest.scope.crop_rule
        self.regions = regions or RegionsSection()
        self.detector = detector if self.regions.propose != "off" else None
        self.explain_later = explain_later

    @property
    def identity(self) -> ModelIdentity:
        return self.model.identity

    def analyse(self, data: bytes, name: str, sidecar: Sidecar | None = None) -> Analysis:
        return self.prepare(data, name, sidecar)()

    def prepare(self, data: bytes, name: str, sidecar: Sidecar | None = None) -> Callable[[], Analysis]:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        digest = Digest(data)
        try:
            return self._prepare(data, name, sidecar, digest, timings, started)
        except BaseException:
            digest.hexdigest()  # a refused scan leaves no hashing thread behind
            raise

    def _prepare(
        self, data: bytes, name: str, sidecar: Sidecar | None, digest: Digest, timings: dict[str, float], started: float
    ) -> Callable[[], Analysis]:
        """`prepare` with the scan's digest under way: a scan to classify takes it to `_classify`, which waits for it
        only after the invoke (a 2048 x 1664 film's 3.6 ms of hashing outlasts its 2 ms of decoding)."""
        try:
            decoded = decode_bytes(data, self.max_pixels)
        except TooManyPixelsError as exc:
            raise TooManyPixelsError(
                f"{exc}; raise [ingest] max_pixels in the device config if such scans are expected"
            ) from exc
        facts = image_facts(decoded)
        timings["decode_ms"] = (time.perf_counter() - started) * 1000
        gray = decoded.pixels
        found: tuple[Candidate, ...] = ()  # the regions the device proposed, when it classifies them
        if sidecar is not None:
            regions = self._regions(sidecar, decoded.instance_uid, facts)
            views = [self._region_view(gray, region, sidecar.kind) for region in regions]
            marker = Marker(sidecar.marked_by, sidecar.reader)
        else:
            reason = needs_roi_reason(Measured.of(decoded), self.limits, name)
            if reason is not None:
                found, why = self._proposals(decoded, timings)
                if self.regions.propose != "answer" or not found:
                    unanswered = Analysis(digest.hexdigest(), NEEDS_ROI, facts, (), reason, None, timings, found, why)
                    return lambda: unanswered
                views = [self._region_view(gray, candidate.region, "device") for candidate in found]
                marker = Marker(MARKED_BY_DEVICE, None)
            else:
                region, box = whole_image(gray)
                views = [(region, "whole image", box, box, gray)]
                marker = Marker(MARKED_BY_NONE, None)
        tick = time.perf_counter()
        inputs = [to_model_input(crop, self.model.manifest.preprocess) for *_, crop in views]
        timings["preprocess_ms"] = (time.perf_counter() - tick) * 1000
        scores: list[float | None] = [candidate.score for candidate in found] or [None] * len(views)
        return partial(self._classify, digest, facts, timings, gray, views, inputs, marker, scores)

    def _classify(
        self,
        digest: Digest,
        facts: ImageFacts,
        timings: dict[str, float],
        gray: Gray8,
        views: list[RegionCut],
        inputs: list[Gray8],
        marker: Marker,
        scores: list[float | None],
    ) -> Analysis:
        """Each region's answer (batches of at most `BATCH_LIMIT` per invoke), explained now or left for later."""
        predictions = [
            prediction
            for first in range(0, len(inputs), BATCH_LIMIT)
            for prediction in self.model.predict_batch(inputs[first : first + BATCH_LIMIT], heatmap=False)
        ]
        answers = []
        for (region, marked_as, box, window, _crop), prediction, score in zip(views, predictions, scores, strict=True):
            for key, value in prediction.timings_ms.items():
                _add(timings, key, value)
            answers.append(self._answer(region, marked_as, marker, box, window, prediction, score))
        analysis = Analysis(digest.hexdigest(), CLASSIFIED, facts, tuple(answers), None, None, timings)
        explain = partial(self._explained, analysis, gray, views, predictions)
        return replace(analysis, pending=explain) if self.explain_later else explain()

    def _explained(
        self,
        analysis: Analysis,
        gray: Gray8,
        views: list[RegionCut],
        predictions: list[Prediction],
    ) -> Analysis:
        """`analysis` with each region's Grad-CAM peak and the overlay picture (when the bundle explains)."""
        answers, pictures = [], []
        for (region, _, box, window, crop), answer, prediction in zip(
            views, analysis.regions, predictions, strict=True
        ):
            explained = self.model.explain(prediction)
            for key, value in explained.timings_ms.items():
                if key not in prediction.timings_ms:
                    _add(analysis.timings_ms, key, value)
            square = _model_square(window, crop)
            answers.append(replace(answer, heatmap_peak=_peak(square, explained)))
            pictures.append(self._picture(region, answer, box, square, crop, explained))
        overlay = None
        if any(picture.heatmap is not None for picture in pictures):
            drawing = partial(render, gray, pictures, heat_scale=self.model.manifest.heat_scale)
            overlay = Overlay(drawing, analysis.timings_ms)
        return replace(analysis, regions=tuple(answers), overlay=overlay, pending=None)

    def _proposals(self, decoded: DecodedImage, timings: dict[str, float]) -> tuple[tuple[Candidate, ...], str | None]:
        """The detector's candidates on a film, or none and why (None: the bundle has no detector, or it is off)."""
        if self.detector is None:
            return (), None
        proposal = self.detector.propose(decoded, self.regions.max_candidates, self.regions.min_score)
        timings["detect_ms"] = proposal.detect_ms
        if proposal.reason is None and not proposal.candidates:
            return (), f"the detector found no candidate scoring {self.regions.min_score:g} or more"
        return proposal.candidates, proposal.reason

    def _regions(self, sidecar: Sidecar, instance_uid: str | None, facts: ImageFacts) -> list[Region]:
        """The sidecar's regions on this scan: a DICOM SR or SEG keeps those that reference the scan's own SOP
        Instance UID (a report's point marks become circles of the crop rule's smallest radius)."""
        if sidecar.kind not in ("sr", "seg"):
            return parse_sidecar(sidecar.kind, sidecar.data, facts.width, facts.height)
        if instance_uid is None:
            raise RegionError(f"a DICOM {sidecar.kind.upper()} marks DICOM images by their UID; this scan is not DICOM")
        if sidecar.kind == "seg":
            return seg_regions(sidecar.data, instance_uid, facts.width, facts.height)
        return sr_regions(sidecar.data, instance_uid, facts.width, facts.height, self.rule.min_side / self.rule.scale)

    def _region_view(self, gray: Gray8, region: Region, kind: str) -> RegionCut:
        crop, window = crop_region(gray, region, self.rule)
        marked_as = region.shape or ("mask" if kind in ("mask", "seg") else "circle" if region.box is None else "box")
        return region, marked_as, region.bounds(gray.shape[1], gray.shape[0]), window, crop

    def _answer(
        self,
        region: Region,
        marked_as: str,
        marker: Marker,
        box: Box,
        window: Box,
        prediction: Prediction,
        detector_score: float | None,
    ) -> RegionAnswer:
        """One region's answer in the scan's coordinates (its Grad-CAM peak comes with the explanation)."""
        return RegionAnswer(
            region.label,
            marked_as,
            marker.by,
            marker.reader,
            box,
            window,
            prediction.probability,
            prediction.logit,
            prediction.label,
            None,
            detector_score,
        )

    def _picture(
        self, region: Region, answer: RegionAnswer, box: Box, square: Box, crop: Gray8, prediction: Prediction
    ) -> RegionView:
        """One region's panel of the overlay, with its heat on the bundle's scale."""
        circle = (region.cx, region.cy, region.radius) if answer.marked_as == "circle" else None
        caption = f"{region.label}  p={prediction.probability:.3f}  {prediction.label}"
        heat = None
        if prediction.heatmap is not None:
            heat = heat_on_scale(prediction.heatmap, prediction.evidence, self.model.manifest.heat_scale)
        return RegionView(region.label, caption, box, circle, square, pad_to_square(crop), heat)


def _peak(square: Box, prediction: Prediction) -> tuple[int, int] | None:
    """Where the Grad-CAM evidence peaks, in scan pixels (None without a heatmap)."""
    if prediction.heatmap is None:
        return None
    x, y = peak_location(prediction.heatmap)
    side = prediction.heatmap.shape[0]
    return (
        square.x0 + round((x + 0.5) * (square.x1 - square.x0) / side - 0.5),
        square.y0 + round((y + 0.5) * (square.y1 - square.y0) / side - 0.5),
    )


def _model_square(window: Box, crop: Gray8) -> Box:
    """The square the model input covers: the crop window, or for a non-square whole image its padded square."""
    height, width = crop.shape
    side = max(height, width)
    left, top = window.x0 - (side - width) // 2, window.y0 - (side - height) // 2
    return Box(left, top, left + side, top + side)


def _add(timings: dict[str, float], key: str, value: float) -> None:
    timings[key] = timings.get(key, 0.0) + value
