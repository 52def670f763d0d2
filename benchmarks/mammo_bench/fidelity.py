"""The latency table's fidelity columns: how far each runtime's answers are from the Keras float model's.

A faster row is only worth having if it answers like the model that was validated. Every classifier row (LiteRT's
variants, tflite-runtime's, the peers') runs the product's own predict (`EdgeModel`: probability, Grad-CAM head,
fusion) on the first N images of the bundle's self-test sample (the conversion's fidelity images, preprocessed), and
is compared with the Keras float model: the calibrated probabilities the conversion stored in that sample, and,
when the training run is given, the Keras Grad-CAM heatmaps of the same images (computed in a child process:
TensorFlow must not share the timing process). The reference is saved as one ``.npz``, so a runtime in another
environment (tflite-runtime needs numpy < 2) is measured against the very same arrays.
The child is ``python -m mammo_bench.keras_bench heatmaps RUN_DIR REFERENCE.npz`` (the workstation's module).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_app.gradcam import heatmap_correlation
from edge_app.manifest import Manifest
from edge_app.model import EdgeModel
from edge_app.selftest import read_selftest
from mammo_bench.child import run_json_child


@dataclass(frozen=True)
class FidelityReference:
    images: NDArray[np.uint8]  # (n, size, size, 1) model inputs
    probabilities: NDArray[np.float64]  # Keras float, calibrated
    heatmaps: NDArray[np.float32] | None  # Keras float fused Grad-CAM, when the run was given

    def save(self, path: Path) -> None:
        arrays = {"images": self.images, "probabilities": self.probabilities}
        if self.heatmaps is not None:
            arrays["heatmaps"] = self.heatmaps
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path) -> FidelityReference:
        with np.load(path, allow_pickle=False) as stored:
            heatmaps = np.asarray(stored["heatmaps"], np.float32) if "heatmaps" in stored.files else None
            return cls(np.asarray(stored["images"]), np.asarray(stored["probabilities"], np.float64), heatmaps)


def build_reference(
    bundle: Path, manifest: Manifest, count: int, keras_run: Path | None, path: Path
) -> FidelityReference:
    """The first `count` self-test images and their Keras probabilities, saved at `path`; with `keras_run`, a child
    adds the Keras heatmaps to the file."""
    sample = read_selftest(bundle, manifest)
    FidelityReference(sample.images[:count], sample.keras[:count], None).save(path)
    if keras_run is not None:
        run_json_child(
            "mammo_bench.keras_bench",
            ["heatmaps", str(keras_run), str(path)],
            f"Keras Grad-CAM reference of {keras_run}",
        )
    return FidelityReference.load(path)


def fidelity_figures(model: EdgeModel, reference: FidelityReference) -> dict[str, Any]:
    """The row's agreement with Keras float at the bundle's threshold, its probability differences and (with
    reference heatmaps) the Pearson correlation of its heatmaps with Keras's."""
    predictions = [model.predict(image) for image in reference.images]
    probabilities = np.array([prediction.probability for prediction in predictions])
    threshold = model.manifest.threshold
    difference = np.abs(probabilities - reference.probabilities)
    figures: dict[str, Any] = {
        "fidelity_images": len(reference.images),
        "agreement": round(float(np.mean((probabilities >= threshold) == (reference.probabilities >= threshold))), 4),
        "max_abs_prob_diff": round(float(difference.max()), 4),
        "mean_abs_prob_diff": round(float(difference.mean()), 5),
        "heatmap_pearson": None,
        "heatmap_pearson_min": None,
    }
    if reference.heatmaps is not None:
        pearson = [
            heatmap_correlation(prediction.heatmap, expected)
            for prediction, expected in zip(predictions, reference.heatmaps, strict=True)
            if prediction.heatmap is not None
        ]
        figures["heatmap_pearson"] = round(float(np.mean(pearson)), 4)
        figures["heatmap_pearson_min"] = round(float(np.min(pearson)), 4)
    return figures
