"""The model bundle's ``manifest.json``: defined once here, written by ``convert``, read and verified by the device.

A bundle is a folder: the TFLite files, ``labels.txt``, ``manifest.json``, (from the fidelity gate) ``report.json``
and ``selftest.npz``, the images and answers a device checks itself against before it serves the model. The
manifest carries everything the device needs to reproduce training exactly and to stamp model identity into every
result; `load_manifest` refuses a bundle whose schema, files or hashes do not match, with a
one-line reason.

Files and their roles:
- ``classifier`` (one per variant: int8, float32, float16, dynamic): input the preprocessed image, outputs the
  malignant logit and each backbone's last-conv-block feature maps (``outputs`` says which output is which);
- ``gradcam_head`` (float32, shared by every variant): input those feature maps, outputs each backbone's Grad-CAM
  map, computed in closed form from the head's weights (exact for a pooled + dense head, no gradient ops);
- ``detector`` (at most one, from schema 6): input a film's canvas (`edge_app.detect`), outputs the centre heatmap
  and the log radius per cell (``outputs``: ``heat``, ``log_radius``); ``detector`` in the manifest says how the
  canvas is made and which films it was trained on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_app.detect import DetectorInput
from edge_app.errors import BundleError
from edge_app.fsutil import sha256_of
from edge_app.preprocess import PreprocessConfig
from edge_app.scope import TrainingScope
from edge_app.strict import checked_fields

SCHEMA_VERSION = 6
# 2 added `rejected` and each file's `float_layers`; 3 added `scope` (what the training patches were: crop rule and
# sizes); 4 added `selftest`; 5 added `heat_scale`; 6 added `detector`. Older bundles read as they are, with the
# default scope, no self-test set, no heat scale (each region's heat then scaled to its own peak, and the legend says
# so) and no detector (no suggestions).
READABLE_SCHEMA_VERSIONS = (1, 2, 3, 4, 5, 6)
MANIFEST = "manifest.json"
LABELS = ("benign", "malignant")
VARIANTS = ("int8", "float32", "float16", "dynamic")


@dataclass(frozen=True)
class TensorSpec:
    """One model input: shape, dtype and (for quantized tensors) scale and zero point."""

    shape: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0


@dataclass(frozen=True)
class ModelFile:
    role: str  # "classifier" | "gradcam_head"
    variant: str  # int8 | float32 | float16 | dynamic (gradcam_head: float32)
    sha256: str
    size_bytes: int
    input: TensorSpec  # the first input (the image, for a classifier)
    outputs: dict[str, int]  # "logit" and "<backbone>" -> output position (classifier); "<backbone>" (gradcam_head)
    inputs: dict[str, int] = field(default_factory=dict)  # gradcam_head: "<backbone>" -> input position
    runtimes: dict[str, str] = field(default_factory=dict)  # runtime label -> "ok" or the reason it failed
    # int8 repaired by selective quantisation: the layers left in float (and why), and their share of the MACs
    float_layers: dict[str, str] = field(default_factory=dict)
    float_macs_share: float = 0.0


@dataclass(frozen=True)
class SelfTestSet:
    """The bundle's own sample: fidelity images with the Keras float answers and each variant's answers as the
    conversion measured them (``edge_app.selftest`` reads it)."""

    file: str
    sha256: str
    size_bytes: int
    images: int


@dataclass(frozen=True)
class DetectorSpec:
    """How the bundle's ``detector`` file reads a film, and the films it was trained on: their pixel spacing from
    `min_spacing_mm` to `max_spacing_mm` (a film outside gets no suggestions, with the reason). `froc` is its
    cross-validated FROC (the model card's curve), `fidelity` the conversion's int8 check against float."""

    input: DetectorInput
    min_spacing_mm: float
    max_spacing_mm: float
    froc: dict[str, Any] = field(default_factory=dict)
    fidelity: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.min_spacing_mm <= self.max_spacing_mm:
            raise BundleError(
                f"manifest detector spacing range {self.min_spacing_mm}..{self.max_spacing_mm} mm is not a range"
            )

    @classmethod
    def from_dict(cls, values: Any) -> DetectorSpec:
        checked = _strict(cls, values, "detector")
        checked["input"] = DetectorInput.from_dict(checked["input"])
        return cls(**checked)


@dataclass(frozen=True)
class Manifest:
    schema_version: int
    name: str
    version: str
    architecture: str
    backbones: tuple[str, ...]
    centre_offsets: tuple[float, ...]
    preprocess: PreprocessConfig
    labels: tuple[str, ...]
    temperature: float
    threshold: float
    target_sensitivity: float
    files: dict[str, ModelFile]
    training: dict[str, Any]
    metrics: dict[str, Any]
    tools: dict[str, str]
    created: str
    forced: bool = False
    rejected: dict[str, list[str]] = field(default_factory=dict)  # variant -> why the fidelity gate refused it
    scope: TrainingScope = field(default_factory=TrainingScope)  # the crop rule and patch sizes of the training data
    selftest: SelfTestSet | None = None
    heat_scale: float | None = None
    """The Grad-CAM evidence (fused map, malignant-logit units) shown in full colour: the 95th percentile of the peak
    evidence over the test split, so one scale serves every region and little evidence looks like little heat."""
    detector: DetectorSpec | None = None

    def classifier(self, variant: str) -> tuple[str, ModelFile]:
        for name, entry in self.files.items():
            if entry.role == "classifier" and entry.variant == variant:
                return name, entry
        available = ", ".join(sorted(self.variants)) or "none"
        why = (
            f": the fidelity gate rejected it ({'; '.join(self.rejected[variant])})" if variant in self.rejected else ""
        )
        raise BundleError(
            f"the bundle has no {variant} classifier{why}; it has {available}: "
            "choose one of them ([model] variant, or --variant)"
        )

    def gradcam_head(self) -> tuple[str, ModelFile]:
        for name, entry in self.files.items():
            if entry.role == "gradcam_head":
                return name, entry
        raise BundleError("the bundle has no gradcam_head model")

    def detector_file(self) -> tuple[str, ModelFile] | None:
        """The detector's file, or None for a bundle without one (it proposes no regions)."""
        found = [(name, entry) for name, entry in self.files.items() if entry.role == "detector"]
        if len(found) > 1:
            raise BundleError(f"the bundle lists {len(found)} detector files; a bundle has at most one")
        if bool(found) != (self.detector is not None):
            raise BundleError("the manifest's detector and its detector file come together: one is missing")
        return found[0] if found else None

    @property
    def variants(self) -> list[str]:
        return [entry.variant for entry in self.files.values() if entry.role == "classifier"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _strict(cls: type, values: Any, where: str) -> dict[str, Any]:
    return checked_fields(cls, values, f"manifest {where}", BundleError)


def manifest_from_dict(values: Any) -> Manifest:
    """Parse and type-check a manifest; every problem is a BundleError naming the key."""
    if not isinstance(values, dict):
        raise BundleError("manifest.json must hold a JSON object")
    version = values.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        readable = ", ".join(map(str, READABLE_SCHEMA_VERSIONS))
        raise BundleError(f"manifest schema version {version!r} is not supported (this device reads {readable})")
    top = _strict(Manifest, values, "top level")
    files = {}
    for name, raw in _strict_mapping(top["files"], "files").items():
        entry = _strict(ModelFile, raw, f"files[{name!r}]")
        spec = _strict(TensorSpec, entry["input"], f"files[{name!r}].input")
        entry["input"] = TensorSpec(**{**spec, "shape": tuple(spec["shape"])})
        files[name] = ModelFile(**entry)
    try:
        preprocess = PreprocessConfig.from_dict(top["preprocess"])
    except Exception as exc:
        raise BundleError(f"manifest preprocess is invalid: {exc}") from exc
    top.update(
        files=files,
        preprocess=preprocess,
        scope=TrainingScope.from_dict(top.get("scope", {})),
        backbones=tuple(top["backbones"]),
        centre_offsets=tuple(float(v) for v in top["centre_offsets"]),
        labels=tuple(top["labels"]),
        selftest=_selftest_set(top.get("selftest")),
        detector=None if top.get("detector") is None else DetectorSpec.from_dict(top["detector"]),
    )
    manifest = Manifest(**top)
    if manifest.labels != LABELS:
        raise BundleError(f"manifest labels {list(manifest.labels)} are not {list(LABELS)}")
    if len(manifest.backbones) != len(manifest.centre_offsets):
        raise BundleError("manifest backbones and centre_offsets differ in length")
    if manifest.heat_scale is not None and not (
        isinstance(manifest.heat_scale, (int, float)) and 0 < manifest.heat_scale < float("inf")
    ):
        raise BundleError(f"manifest heat_scale must be a positive number, got {manifest.heat_scale!r}")
    manifest.detector_file()  # a detector spec without its file, or a file without its spec, is refused here
    return manifest


def _selftest_set(values: Any) -> SelfTestSet | None:
    return None if values is None else SelfTestSet(**_strict(SelfTestSet, values, "selftest"))


def _strict_mapping(values: Any, where: str) -> dict[str, Any]:
    if not isinstance(values, dict) or not values:
        raise BundleError(f"manifest {where} must be a non-empty object")
    return values


def load_manifest(bundle: Path, verify_files: bool = True) -> Manifest:
    """Read ``bundle/manifest.json`` and (by default) check every listed file's presence, size and sha256."""
    path = Path(bundle) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle} is not a model bundle: {MANIFEST} not found")
    try:
        values = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from exc
    manifest = manifest_from_dict(values)
    if verify_files:
        for name, entry in manifest.files.items():
            verify_file(Path(bundle), name, entry.size_bytes, entry.sha256)
        if manifest.selftest is not None:
            verify_file(Path(bundle), manifest.selftest.file, manifest.selftest.size_bytes, manifest.selftest.sha256)
    return manifest


def verify_file(bundle: Path, name: str, size_bytes: int, sha256: str) -> None:
    """Raise BundleError unless ``bundle/name`` is there with the size and sha256 the manifest lists."""
    file = bundle / name
    if not file.is_file():
        raise BundleError(f"bundle file {name} listed in the manifest is missing")
    size = file.stat().st_size
    if size != size_bytes:  # a truncated copy is named before hashing hundreds of MB
        raise BundleError(f"bundle file {name} is {size} bytes, the manifest says {size_bytes} (truncated or replaced)")
    if sha256_of(file) != sha256:
        raise BundleError(f"bundle file {name} does not match its sha256 in the manifest (corrupted or replaced)")


def write_manifest(bundle: Path, manifest: Manifest) -> Path:
    path = Path(bundle) / MANIFEST
    path.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    return path
