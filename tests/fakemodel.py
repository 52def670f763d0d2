"""A model bundle without TensorFlow or a TFLite runtime: each "model file" is a small JSON description that
`FakeInterpreter` executes with numpy, so `EdgeModel`, `ModelAnalyser` and the manifest checks run for real, in
milliseconds, with answers a test can work out by hand.

The classifier reads its (possibly quantised) image, and answers
- ``logit = (mean pixel - 128) / 32``, quantised to the output's scale when the output is quantised;
- per backbone, a 3x3 feature map, ``CHANNELS`` times over: the image's mean over each third of rows and columns
  (``cells``) for the first backbone, ``0.5 * cells.T`` for the second, so fusion must combine two maps.
The Grad-CAM head answers, per backbone, the mean over channels of the map it was given.
The detector (a bundle written with ``detector=True``) answers, per heatmap cell, the mean of the canvas pixels it
spans over 255 as the centre score (the brightest cell peaks) and a radius of ``FAKE_RADIUS`` canvas pixels.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edge_app.detect import DetectorInput
from edge_app.manifest import SelfTestSet
from edge_app.model import calibrated_probabilities
from edge_app.runtime import Runtime
from edge_app.selftest import SelfTestSample, write_selftest

GRID = 3
CHANNELS = 2
BACKBONES = ("densenet121", "resnet50")
FAKE_DETECTOR = DetectorInput(spacing_mm=0.8, canvas=(64, 48), stride=4)
FAKE_RADIUS = 6.0
DETECTOR_FILM_MASS = (300, 200, 30)  # x, y, radius in film pixels (0.1 mm: a 6 mm mass)


def fake_logit(pixels: np.ndarray) -> float:
    return (float(np.mean(pixels)) - 128.0) / 32.0


def fake_cams(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two backbones' class-activation maps for a model input (what the head gives back)."""
    side = pixels.shape[0] // GRID
    cells = pixels[: side * GRID, : side * GRID].reshape(GRID, side, GRID, side).mean(axis=(1, 3))
    return cells, 0.5 * cells.T


class FakeInterpreter:
    """The part of the TFLite Interpreter API that `edge_app` uses."""

    def __init__(self, model_content: bytes, num_threads: int = 1) -> None:
        self.spec = json.loads(model_content)
        self.num_threads = num_threads
        self.tensors: dict[int, np.ndarray] = {}
        self.allocated = False

    def allocate_tensors(self) -> None:
        if "refuse" in self.spec:
            message = self.spec["refuse"]
            raise RuntimeError(f"{message}\nsecond line of the runtime's message" if message else "  ")
        self.allocated = True

    def _details(self, specs: list[dict[str, Any]], first: int) -> list[dict[str, Any]]:
        return [
            {
                "index": first + position,
                "shape": np.array(spec["shape"], np.int32),
                "dtype": np.dtype(spec["dtype"]).type,
                "quantization": (spec.get("scale", 0.0), spec.get("zero_point", 0)),
            }
            for position, spec in enumerate(specs)
        ]

    def resize_tensor_input(self, index: int, shape: list[int]) -> None:
        """A batch of `shape[0]` images: every output follows (allocate again before invoking, as LiteRT wants)."""
        self.spec["inputs"][index]["shape"] = list(shape)
        for output in self.spec["outputs"]:
            output["shape"] = [shape[0], *output["shape"][1:]]
        self.allocated = False

    def get_input_details(self) -> list[dict[str, Any]]:
        return self._details(self.spec["inputs"], 0)

    def get_output_details(self) -> list[dict[str, Any]]:
        return self._details(self.spec["outputs"], 100)

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        detail = self.get_input_details()[index]
        assert value.dtype == detail["dtype"] and tuple(value.shape) == tuple(detail["shape"]), (
            value.dtype,
            value.shape,
        )
        self.tensors[index] = value.copy()

    def get_tensor(self, index: int) -> np.ndarray:
        return self.tensors[index]

    def _real_input(self, position: int) -> np.ndarray:
        scale, zero_point = self.get_input_details()[position]["quantization"]
        raw = self.tensors[position].astype(np.float64)
        return (raw - zero_point) * scale if scale else raw

    def _store(self, position: int, real: np.ndarray) -> None:
        spec = self.spec["outputs"][position]
        scale, zero_point = spec.get("scale", 0.0), spec.get("zero_point", 0)
        dtype = np.dtype(spec["dtype"])
        if scale:
            info = np.iinfo(dtype)
            real = np.clip(np.rint(real / scale + zero_point), info.min, info.max)
        self.tensors[100 + position] = np.asarray(real, dtype).reshape(spec["shape"])

    def invoke(self) -> None:
        assert self.allocated, "invoke before allocate_tensors"
        if "fail_invoke" in self.spec:
            message = self.spec["fail_invoke"]
            raise RuntimeError(f"{message}\nNode number 7 (CONV_2D) failed to invoke." if message else "")
        if self.spec["role"] == "detector":
            canvas = self._real_input(0)[0, ..., 0]
            stride = self.spec["stride"]
            rows, columns = canvas.shape[0] // stride, canvas.shape[1] // stride
            cells = canvas.reshape(rows, stride, columns, stride).mean(axis=(1, 3)) / 255.0
            self._store(self.spec["heat"], cells[np.newaxis, ..., np.newaxis])
            self._store(self.spec["log_radius"], np.full((1, rows, columns, 1), np.log(FAKE_RADIUS)))
        elif self.spec["role"] == "classifier":
            images = self._real_input(0)[..., 0]  # a batch: one or a film's regions
            self._store(self.spec["logit"], np.array([[fake_logit(image)] for image in images]))
            cams = [fake_cams(image) for image in images]
            for position, name in enumerate(BACKBONES):
                maps = np.stack([np.repeat(pair[position][..., np.newaxis], CHANNELS, axis=-1) for pair in cams])
                self._store(self.spec[name], maps)
        else:
            for name in BACKBONES:
                given = self._real_input(self.spec["inputs_by_name"][name])
                self._store(self.spec[name], given.mean(axis=-1))


FAKE_RUNTIME = Runtime("fake", "1.0", FakeInterpreter)


def _classifier_spec(size: int, variant: str) -> dict[str, Any]:
    image = {"shape": [1, size, size, 1], "dtype": "float32"}
    logit: dict[str, Any] = {"shape": [1, 1], "dtype": "float32"}
    if variant == "int8":
        image = {"shape": [1, size, size, 1], "dtype": "uint8", "scale": 1.0, "zero_point": 0}
        logit = {"shape": [1, 1], "dtype": "int8", "scale": 0.0625, "zero_point": 3}
    maps = {"shape": [1, GRID, GRID, CHANNELS], "dtype": "float32"}
    # outputs in the order a converter may leave them: densenet121, logit, resnet50
    return {
        "role": "classifier",
        "inputs": [image],
        "outputs": [maps, logit, maps],
        "densenet121": 0,
        "logit": 1,
        "resnet50": 2,
    }


def _head_spec() -> dict[str, Any]:
    maps = {"shape": [1, GRID, GRID, CHANNELS], "dtype": "float32"}
    cam = {"shape": [1, GRID, GRID], "dtype": "float32"}
    return {
        "role": "gradcam_head",
        "inputs": [maps, maps],
        "outputs": [cam, cam],
        "inputs_by_name": {"resnet50": 0, "densenet121": 1},
        "resnet50": 0,
        "densenet121": 1,
    }


def _detector_spec() -> dict[str, Any]:
    height, width = FAKE_DETECTOR.canvas
    cells = [1, *FAKE_DETECTOR.cells, 1]
    return {
        "role": "detector",
        "inputs": [{"shape": [1, height, width, 1], "dtype": "float32"}],
        "outputs": [{"shape": cells, "dtype": "float32"}, {"shape": cells, "dtype": "float32"}],
        "log_radius": 0,
        "heat": 1,
        "stride": FAKE_DETECTOR.stride,
    }


def write_fake_bundle(
    bundle: Path,
    size: int = 48,
    variants: tuple[str, ...] = ("int8", "float32"),
    temperature: float = 2.0,
    threshold: float = 0.5,
    patch_side_px: tuple[int, int] = (48, 48),
    crop_scale: float = 4.0,
    selftest: bool = True,
    detector: bool = False,
    **manifest_changes: Any,
) -> Path:
    """A bundle directory whose manifest describes its fake files exactly (sizes and sha256), with a self-test
    sample whose recorded answers are the fake model's own (unless `selftest` is False: an older bundle), and with
    `detector` a detector for films of 0.05 to 0.5 mm pixel spacing (schema 6)."""
    bundle.mkdir(parents=True, exist_ok=True)
    specs = {f"classifier_{variant}.tflite": _classifier_spec(size, variant) for variant in variants}
    specs["gradcam_head.tflite"] = _head_spec()
    if detector:
        specs["detector_float32.tflite"] = _detector_spec()
    files = {}
    for name, spec in specs.items():
        data = json.dumps(spec).encode()
        (bundle / name).write_bytes(data)
        first_input = spec["inputs"][0]
        files[name] = {
            "role": spec["role"],
            "variant": name.removeprefix("classifier_").removesuffix(".tflite")
            if spec["role"] == "classifier"
            else "float32",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_bytes": len(data),
            "input": {
                "shape": first_input["shape"],
                "dtype": first_input["dtype"],
                "scale": first_input.get("scale", 0.0),
                "zero_point": first_input.get("zero_point", 0),
            },
            "outputs": {key: spec[key] for key in ("logit", *BACKBONES, "heat", "log_radius") if key in spec},
            "inputs": spec.get("inputs_by_name", {}),
            "runtimes": {},
        }
    manifest = {
        "schema_version": 3,
        "name": "fake-model",
        "version": "7",
        "architecture": "hybrid",
        "backbones": list(BACKBONES),
        "centre_offsets": [0.0, 0.0],
        "preprocess": {"input_size": size, "clahe": False},
        "labels": ["benign", "malignant"],
        "temperature": temperature,
        "threshold": threshold,
        "target_sensitivity": 0.9,
        "files": files,
        "training": {"run": "none"},
        "metrics": {},
        "tools": {},
        "created": "2026-01-01T00:00:00+00:00",
        "scope": {
            "crop_scale": crop_scale,
            "crop_min_side": 16,
            "patch_side_px": list(patch_side_px),
            "patch_side_mm": None,
        },
    }
    if selftest:
        manifest["schema_version"] = 4
        manifest["selftest"] = asdict(_fake_selftest(bundle, size, variants, temperature))
    if detector:
        manifest["schema_version"] = 6
        manifest["detector"] = {"input": FAKE_DETECTOR.to_dict(), "min_spacing_mm": 0.05, "max_spacing_mm": 0.5}
    manifest.update(manifest_changes)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle


def fake_probability(image: np.ndarray, temperature: float) -> float:
    """What the float fake model answers for a model input (the int8 one rounds its logit to 1/16)."""
    return float(calibrated_probabilities(fake_logit(image.astype(np.float64)), temperature))


def _fake_selftest(bundle: Path, size: int, variants: tuple[str, ...], temperature: float) -> SelfTestSet:
    """Eight images from dark to bright, so the answers span both labels."""
    images = np.stack([np.full((size, size, 1), level, np.uint8) for level in np.linspace(60, 200, 8).astype(int)])
    images[:, : size // 2] //= 2  # not constant: half of each image darker
    answers = {}
    for variant in variants:
        logits = np.array([fake_logit(image[..., 0].astype(np.float64)) for image in images])
        if variant == "int8":
            logits = (np.clip(np.rint(logits / 0.0625 + 3), -128, 127) - 3) * 0.0625
        answers[variant] = calibrated_probabilities(logits, temperature)
    keras = np.array([fake_probability(image[..., 0], temperature) for image in images])
    return write_selftest(bundle, SelfTestSample(images, keras, answers))


def detector_film() -> np.ndarray:
    """A 0.1 mm film for the fake detector, 480 x 360 px: tissue brightening towards the chest wall (no flat plateau
    to peak on), a bright mass (`DETECTOR_FILM_MASS`), and air."""
    rows, columns = np.mgrid[0:480, 0:360].astype(np.float32)
    tissue = (columns / 330) ** 2 + ((rows - 240) / 220) ** 2 <= 1
    film = np.where(tissue, 1800 - columns * 2 + rows * 0.5, 40).astype(np.uint16)
    x, y, radius = DETECTOR_FILM_MASS
    film[(columns - x) ** 2 + (rows - y) ** 2 <= radius**2] = 3900
    return film
