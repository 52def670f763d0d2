"""The bundle's self-test: a device runs the bundle's own sample before it serves a model, and compares its answers
with the ones the conversion measured.

A model can pass every hash check and still answer differently on a device: another runtime build, another CPU's
kernels, a numpy that reads the tensors another way. Arm's int8 kernels and another runtime build differ from the
conversion's answers by a few hundredths in probability; a model that is wrong here differs by far more. The sample
is ``selftest.npz`` in the bundle: the fidelity gate's images (preprocessed model inputs), the Keras float
probabilities and each variant's answers from the conversion. ``convert`` writes it, ``mammo-edge model install``
and ``mammo-edge selftest`` check it, and the Arm check runs all of it.
"""

from __future__ import annotations

import io
import platform
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_app.errors import BundleError
from edge_app.fsutil import sha256_of
from edge_app.manifest import Manifest, SelfTestSet
from edge_app.model import EdgeModel

SELFTEST_FILE = "selftest.npz"
# The largest |probability difference| from the conversion's own answers that still passes. Measured on the demo
# bundle's 384 images, int8: LiteRT on x86 0 (the conversion's runtime), tflite-runtime 2.14 on x86 0.042, LiteRT on
# Arm 0.052 (benchmarks/results/arm64-fidelity.json); a broken model or runtime is off by several tenths.
MAX_DRIFT = 0.1
QUICK_IMAGES = 16  # what an install checks (a few seconds for the 224 px hybrid); the Arm check runs them all
_KERAS = "keras"
_IMAGES = "images"


@dataclass(frozen=True)
class SelfTestSample:
    images: NDArray[np.uint8]  # (n, size, size, 1): preprocessed model inputs
    keras: NDArray[np.float64]  # the Keras float model's calibrated probabilities
    answers: dict[str, NDArray[np.float64]]  # variant -> the converted file's probabilities, as converted


def write_selftest(bundle: Path, sample: SelfTestSample) -> SelfTestSet:
    """``bundle/selftest.npz`` (byte-identical for identical arrays: the archive's dates are fixed) and its entry."""
    arrays = {_IMAGES: sample.images, _KERAS: sample.keras, **sample.answers}
    path = bundle / SELFTEST_FILE
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buffer.getvalue())
    return SelfTestSet(SELFTEST_FILE, sha256_of(path), path.stat().st_size, len(sample.images))


def read_selftest(bundle: Path, manifest: Manifest) -> SelfTestSample:
    """The bundle's sample (its hash was checked with the manifest's other files)."""
    if manifest.selftest is None:
        raise BundleError(
            f"bundle {manifest.name} {manifest.version} (schema {manifest.schema_version}) has no self-test sample: "
            "convert it again with this version of mammo-convert"
        )
    try:
        with np.load(Path(bundle) / manifest.selftest.file, allow_pickle=False) as stored:
            arrays = {name: np.asarray(stored[name]) for name in stored.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise BundleError(f"the bundle's self-test sample cannot be read: {exc}") from exc
    if _IMAGES not in arrays or _KERAS not in arrays:
        raise BundleError(f"the bundle's self-test sample lacks {_IMAGES!r} or {_KERAS!r}")
    images, keras = arrays.pop(_IMAGES), arrays.pop(_KERAS)
    answers = {variant: values.astype(np.float64) for variant, values in arrays.items()}
    return SelfTestSample(images.astype(np.uint8), keras.astype(np.float64), answers)


def sample_scan(bundle: Path, manifest: Manifest) -> bytes:
    """The sample's first image as a PNG file: a scan to put through the whole analyser."""
    ok, encoded = cv2.imencode(".png", read_selftest(bundle, manifest).images[0])
    if not ok:
        raise BundleError("the bundle's first self-test image cannot be written as a PNG")
    return encoded.tobytes()


@dataclass(frozen=True)
class SelfTestReport:
    """This device's answers on the sample, against the conversion's (same variant) and against Keras float."""

    variant: str
    runtime: str
    images: int
    threshold: float
    probabilities: tuple[float, ...]
    agreement_reference: float
    max_abs_prob_diff_reference: float
    agreement_keras: float
    max_abs_prob_diff_keras: float

    @property
    def failures(self) -> list[str]:
        if self.max_abs_prob_diff_reference <= MAX_DRIFT:
            return []
        return [
            f"{self.variant} on {self.runtime} answers up to {self.max_abs_prob_diff_reference:.4f} away from the "
            f"conversion's own answers on the bundle's sample (allowed {MAX_DRIFT})"
        ]

    def figures(self, model: EdgeModel) -> dict[str, Any]:
        """The report as a result file: against Keras float at the top (what the fidelity gate measures), against
        the conversion's own answers beside it, with the machine it ran on."""
        return {
            "machine": platform.machine(),
            "python": platform.python_version(),
            "runtime": self.runtime,
            "model": {"name": model.manifest.name, "version": model.manifest.version, "variant": self.variant},
            "images": self.images,
            "threshold": self.threshold,
            "agreement": self.agreement_keras,
            "max_abs_prob_diff": self.max_abs_prob_diff_keras,
            "against_conversion": {
                "agreement": self.agreement_reference,
                "max_abs_prob_diff": self.max_abs_prob_diff_reference,
                "allowed_max_abs_prob_diff": MAX_DRIFT,
            },
            "passed": not self.failures,
            "probabilities": list(self.probabilities),
        }

    def line(self) -> str:
        return (
            f"self-test {'passed' if not self.failures else 'FAILED'}: {self.variant} on {self.runtime}, "
            f"{self.images} images; against the conversion: agreement {self.agreement_reference:.3f}, largest "
            f"difference {self.max_abs_prob_diff_reference:.2e}; against Keras float: agreement "
            f"{self.agreement_keras:.3f}, largest difference {self.max_abs_prob_diff_keras:.4f}"
        )


def _agreement(a: NDArray[np.float64], b: NDArray[np.float64], threshold: float) -> float:
    return float(np.mean((a >= threshold) == (b >= threshold)))


def run_selftest(model: EdgeModel, limit: int | None = QUICK_IMAGES) -> SelfTestReport:
    """Classify the first `limit` sample images (all with None) with `model`, exactly as the daemon would."""
    sample = read_selftest(model.bundle, model.manifest)
    if model.variant not in sample.answers:
        raise BundleError(f"the bundle's self-test sample has no answers for {model.variant}")
    count = len(sample.images) if limit is None else min(limit, len(sample.images))
    if count == 0:
        raise BundleError("the bundle's self-test sample holds no images")
    got = np.array([model.predict(image, heatmap=False).probability for image in sample.images[:count]])
    reference, keras = sample.answers[model.variant][:count], sample.keras[:count]
    threshold = model.manifest.threshold
    return SelfTestReport(
        variant=model.variant,
        runtime=model.runtime.label,
        images=count,
        threshold=threshold,
        probabilities=tuple(float(p) for p in got),
        agreement_reference=_agreement(got, reference, threshold),
        max_abs_prob_diff_reference=float(np.max(np.abs(got - reference))),
        agreement_keras=_agreement(got, keras, threshold),
        max_abs_prob_diff_keras=float(np.max(np.abs(got - keras))),
    )


def check_selftest(model: EdgeModel, limit: int | None = QUICK_IMAGES) -> SelfTestReport:
    """`run_selftest`, refusing (BundleError) a model whose answers drifted."""
    report = run_selftest(model, limit)
    if report.failures:
        raise BundleError("; ".join(report.failures))
    return report
