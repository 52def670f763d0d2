"""The device-side model: one call from a preprocessed image to a calibrated probability and a Grad-CAM heatmap.

`EdgeModel.predict` is the single function the daemon, `mammo-edge once`, the benchmarks and the conversion
fidelity gate all call, so what the gate checks is exactly what runs. The adapter functions below are explicit
about quantisation (as pycoral's are): inputs are quantised with the tensor's own scale and zero point, outputs
dequantised the same way, so a uint8 model, an int8 model and a float model are fed and read by the same code.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from edge_app.errors import BundleError
from edge_app.gradcam import Heatmap, evidence_peak, fused_evidence, normalise
from edge_app.manifest import Manifest, ModelFile, load_manifest, verify_file
from edge_app.runtime import Runtime, load_runtime, make_interpreter


def set_input(interpreter: Any, values: NDArray[Any]) -> None:
    """Copy `values` (real-valued pixels or maps) into input 0, quantising if the tensor is quantised."""
    detail = interpreter.get_input_details()[0]
    dtype = detail["dtype"]
    scale, zero_point = detail["quantization"]
    if scale:
        info = np.iinfo(dtype)
        quantised = np.rint(np.asarray(values, np.float32) / scale + zero_point)
        array = np.clip(quantised, info.min, info.max).astype(dtype)
    else:
        array = np.asarray(values, dtype)
    interpreter.set_tensor(detail["index"], array.reshape(detail["shape"]))


def set_inputs(interpreter: Any, values: dict[int, NDArray[Any]]) -> None:
    """Several float inputs by position (the Grad-CAM head takes one feature map per backbone)."""
    details = interpreter.get_input_details()
    for position, array in values.items():
        detail = details[position]
        interpreter.set_tensor(detail["index"], np.asarray(array, detail["dtype"]).reshape(detail["shape"]))


def get_output(interpreter: Any, position: int) -> NDArray[np.float32]:
    """Output `position` as float32, dequantised if the tensor is quantised."""
    detail = interpreter.get_output_details()[position]
    raw = interpreter.get_tensor(detail["index"])
    scale, zero_point = detail["quantization"]
    if scale:
        return np.asarray((raw.astype(np.float32) - zero_point) * scale, np.float32)
    return np.asarray(raw, np.float32)


def calibrated_probabilities(logits: ArrayLike, temperature: float) -> NDArray[np.float64]:
    """sigmoid(logit / temperature): the one calibration rule, by which training picks the threshold and the device
    applies it. Written as exp(-log(1 + exp(-z))), it is stable for any logit (the naive form overflows for
    |z| > 709, which a sharp model at a small temperature reaches); underflowing to exactly 0 is the right answer."""
    z = np.asarray(logits, np.float64) / temperature
    with np.errstate(under="ignore"):
        return np.asarray(np.exp(-np.logaddexp(0.0, -z)), np.float64)


def calibrated_probability(logit: float, temperature: float) -> float:
    """One scan's calibrated probability."""
    return float(calibrated_probabilities(logit, temperature))


@dataclass(frozen=True)
class ModelIdentity:
    """What every result is stamped with: which model, which file, which runtime, and its operating point."""

    name: str
    version: str
    architecture: str
    variant: str
    file: str
    sha256: str
    runtime: str
    threshold: float
    target_sensitivity: float

    def stamp(self) -> dict[str, str]:
        """The result's ``model`` object (the operating point is written beside it, as the schema says)."""
        values = asdict(self)
        del values["threshold"], values["target_sensitivity"]
        return values


@dataclass(frozen=True)
class Prediction:
    """One scan's answer: raw logit, calibrated probability, label at the bundle's threshold, optional heatmap."""

    logit: float
    probability: float
    label: str
    heatmap: Heatmap | None  # in [0, 1], peaking at 1 where the evidence is strongest
    timings_ms: dict[str, float]
    evidence: float = 0.0  # the heatmap's peak in malignant-logit units (what `heat_on_scale` paints it by)
    maps: dict[str, NDArray[np.float32]] | None = field(default=None, compare=False, repr=False)
    """A prediction made without its heatmap keeps its image's feature maps, from which `EdgeModel.explain` makes
    the heatmap later (the daemon does it off the loop's lane)."""


ModelOpener = Callable[[str, ModelFile], Any]
"""Builds the interpreter for a bundle file, given its name and manifest entry."""


def _check_runtime(name: str, entry: ModelFile, runtime: Runtime) -> None:
    for label, outcome in entry.runtimes.items():
        if label.split()[0] == runtime.name and outcome != "ok":
            raise BundleError(f"{name} was verified not to run under {label}: {outcome}")


def _check_input(name: str, entry: ModelFile, interpreter: Any, size: int) -> None:
    detail = interpreter.get_input_details()[0]
    shape = tuple(int(v) for v in detail["shape"])
    if entry.role == "classifier" and shape != (1, size, size, 1):
        raise BundleError(f"{name} takes input {shape} but the manifest's preprocessing makes (1, {size}, {size}, 1)")
    if shape != tuple(entry.input.shape) or np.dtype(detail["dtype"]).name != entry.input.dtype:
        raise BundleError(
            f"{name} input is {shape} {np.dtype(detail['dtype']).name}, manifest says "
            f"{tuple(entry.input.shape)} {entry.input.dtype}"
        )


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_size, status.st_mtime_ns, status.st_ino


class EdgeModel:
    """A verified bundle, loaded into interpreters for one variant."""

    def __init__(
        self,
        bundle: Path,
        manifest: Manifest,
        variant: str = "int8",
        runtime: str | Runtime = "auto",
        threads: int = 2,
        heatmaps: bool = True,
        opener: ModelOpener | None = None,
    ) -> None:
        """`opener` builds the interpreter of a bundle file (default: the runtime's own, from the file's checked
        bytes); the benchmarks pass one that opens the same model exported for another runtime."""
        self.bundle = Path(bundle)
        self.manifest = manifest
        self.variant = variant
        self.runtime = runtime if isinstance(runtime, Runtime) else load_runtime(runtime)
        open_model = opener or (
            lambda name, entry: make_interpreter(self.runtime, self.bundle / name, threads, entry.sha256)
        )
        self.classifier_name, self.classifier_entry = manifest.classifier(variant)
        _check_runtime(self.classifier_name, self.classifier_entry, self.runtime)
        self._classifier = open_model(self.classifier_name, self.classifier_entry)
        _check_input(self.classifier_name, self.classifier_entry, self._classifier, manifest.preprocess.input_size)
        self._head: Any = None
        self._loaded = {self.classifier_name: self.classifier_entry}
        if heatmaps:
            head_name, head_entry = manifest.gradcam_head()
            self._loaded[head_name] = head_entry
            self._head_entry = head_entry
            _check_runtime(head_name, head_entry, self.runtime)
            self._head = open_model(head_name, head_entry)
            _check_input(head_name, head_entry, self._head, manifest.preprocess.input_size)
        self._signatures = {name: _signature(self.bundle / name) for name in self._loaded}

    def disk_changes(self) -> str | None:
        """Why the model files on disk no longer match the manifest, or None. The interpreters run the bytes checked
        at load, so a change cannot reach an answer; it is reported, and a restart refuses the bundle. Cheap enough
        to call every minute: a file is hashed again only when its size, time or inode changed."""
        for name, entry in self._loaded.items():
            path = self.bundle / name
            signature = _signature(path)
            if signature == self._signatures[name]:
                continue
            try:
                verify_file(self.bundle, name, entry.size_bytes, entry.sha256)
            except (BundleError, OSError) as exc:
                return str(exc)
            self._signatures[name] = signature  # touched or copied back, same content
        return None

    @classmethod
    def load(
        cls, bundle: Path, variant: str = "int8", runtime: str = "auto", threads: int = 2, heatmaps: bool = True
    ) -> EdgeModel:
        """Verify the bundle (schema, sha256 of every file, inputs) and build the interpreters."""
        return cls(bundle, load_manifest(bundle), variant, runtime, threads, heatmaps)

    @property
    def identity(self) -> ModelIdentity:
        """What every result is stamped with."""
        return ModelIdentity(
            name=self.manifest.name,
            version=self.manifest.version,
            architecture=self.manifest.architecture,
            variant=self.variant,
            file=self.classifier_name,
            sha256=self.classifier_entry.sha256,
            runtime=self.runtime.label,
            threshold=self.manifest.threshold,
            target_sensitivity=self.manifest.target_sensitivity,
        )

    def predict(self, pixels: NDArray[np.uint8], heatmap: bool = True) -> Prediction:
        """Classify one preprocessed image ``(size, size, 1)`` uint8; the heatmap if asked and the bundle has one."""
        return self.predict_batch([pixels], heatmap)[0]

    def predict_batch(self, images: Sequence[NDArray[np.uint8]], heatmap: bool = True) -> list[Prediction]:
        """Classify preprocessed images (a film's regions) in one invoke of the classifier, resized to their number:
        the runtime's kernels work on larger matrices, and a region costs less than a patch file does. Each image's
        answer is the one it gets alone (a test holds this). Each prediction's ``invoke_ms`` is its share of the
        batch's invoke. Without `heatmap`, each prediction keeps its feature maps for `explain`."""
        outputs = self.classifier_entry.outputs
        count = len(images)
        started = time.perf_counter()
        self._batch_size(count)
        set_input(self._classifier, np.stack(images).astype(np.float32))
        self._classifier.invoke()
        logits = get_output(self._classifier, outputs["logit"]).reshape(count, -1)[:, 0]
        invoke_ms = (time.perf_counter() - started) * 1000 / count
        maps = {name: get_output(self._classifier, outputs[name]) for name in self.manifest.backbones}
        predictions = []
        for position, logit in enumerate(logits.tolist()):
            probability = calibrated_probability(logit, self.manifest.temperature)
            label = self.manifest.labels[int(probability >= self.manifest.threshold)]
            own_maps = {name: values[position : position + 1] for name, values in maps.items()}
            prediction = Prediction(logit, probability, label, None, {"invoke_ms": invoke_ms}, maps=own_maps)
            predictions.append(self.explain(prediction) if heatmap else prediction)
        return predictions

    def explain(self, prediction: Prediction) -> Prediction:
        """`prediction` with its Grad-CAM heatmap, from the feature maps it kept (the head's invoke; ``gradcam_ms`` in
        its timings); as it is when the bundle's head was not loaded or it has a heatmap already."""
        if self._head is None or prediction.maps is None:
            return prediction
        tick = time.perf_counter()
        evidence = self._evidence(prediction.maps)
        timings = {**prediction.timings_ms, "gradcam_ms": (time.perf_counter() - tick) * 1000}
        return replace(
            prediction, heatmap=normalise(evidence), evidence=evidence_peak(evidence), timings_ms=timings, maps=None
        )

    def _batch_size(self, count: int) -> None:
        """Resize the classifier's input to `count` images if it holds another number (cheap: no weights move)."""
        detail = self._classifier.get_input_details()[0]
        if int(detail["shape"][0]) != count:
            self._classifier.resize_tensor_input(detail["index"], [count, *(int(v) for v in detail["shape"][1:])])
            self._classifier.allocate_tensors()

    def _evidence(self, maps: dict[str, NDArray[np.float32]]) -> NDArray[np.float32]:
        """The fused Grad-CAM evidence (logit units) of one image's feature maps."""
        head = self._head_entry
        set_inputs(self._head, {head.inputs[name]: maps[name] for name in self.manifest.backbones})
        self._head.invoke()
        cams = [get_output(self._head, head.outputs[name])[0] for name in self.manifest.backbones]
        return fused_evidence(cams, self.manifest.preprocess.input_size, self.manifest.centre_offsets)
