"""The fidelity gate: every converted variant measured against the Keras float model.

Agreement and heatmap correlation need no labels, so they are measured on a fidelity set far larger than the test
split: the test and validation images and their three flips (what training's augmentation shows the model), several
hundred images, each figure with a 95% interval from a bootstrap over the source images (a flip is not an
independent sample). The AUC and its drop stay on the labelled test split (the set's first `n_test` images).
Per variant: label agreement at the stored threshold, mean and max |calibrated probability difference|, and the
Pearson correlation and top-20% overlap between the device's fused Grad-CAM and the Keras GradientTape reference.
The device path is `edge_app.model.EdgeModel.predict`, the very function the daemon runs. The thresholds are the
product's: a variant below one is repaired or rejected, never waved through.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import roc_auc_score

from edge_app.gradcam import heatmap_correlation, top_region_overlap
from edge_app.manifest import Manifest
from edge_app.model import EdgeModel
from mammo_train.data import ArraySet


@dataclass(frozen=True)
class Thresholds:
    max_auc_drop: float = 0.01
    min_agreement: float = 0.98
    min_heatmap_pearson: float = 0.90


@dataclass(frozen=True)
class FidelitySet:
    images: NDArray[np.uint8]
    clusters: NDArray[np.int64]  # the source image each image was made from
    test_labels: NDArray[np.int32]  # labels of the first len(test_labels) images: the test split, unaugmented

    @property
    def n_test(self) -> int:
        return len(self.test_labels)


def fidelity_set(test: ArraySet, val: ArraySet) -> FidelitySet:
    """Test and validation images, then their horizontal, vertical and double flips."""
    originals = np.concatenate([test.images, val.images])
    views = [originals, originals[:, :, ::-1], originals[:, ::-1, :], originals[:, ::-1, ::-1]]
    clusters = np.tile(np.arange(len(originals)), len(views))
    return FidelitySet(np.ascontiguousarray(np.concatenate(views)), clusters, test.labels)


@dataclass(frozen=True)
class Reference:
    """The Keras float model's calibrated probabilities and fused heatmaps on the fidelity images, and the heat scale
    measured on them (the manifest's ``heat_scale``)."""

    probabilities: NDArray[np.float64]
    heatmaps: NDArray[np.float32]
    heat_scale: float | None = None


def cluster_interval(
    values: NDArray[np.floating], clusters: NDArray[np.int64], resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of the mean of `values`, resampling whole clusters (clusters are 0..k-1)."""
    sums = np.bincount(clusters, weights=np.asarray(values, np.float64))
    counts = np.bincount(clusters)
    picks = np.random.default_rng(seed).integers(0, len(sums), (resamples, len(sums)))
    means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def _auc(labels: NDArray[Any], scores: NDArray[Any]) -> float | None:
    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else None


def measure_variant(
    bundle: Path, manifest: Manifest, variant: str, fidelity: FidelitySet, reference: Reference, threads: int
) -> dict[str, Any]:
    model = EdgeModel(bundle, manifest, variant, "auto", threads, heatmaps=True)
    predictions = [model.predict(image) for image in fidelity.images]
    probabilities = np.array([p.probability for p in predictions])
    heatmaps = [p.heatmap for p in predictions if p.heatmap is not None]
    difference = np.abs(probabilities - reference.probabilities)
    test = slice(0, fidelity.n_test)
    auc_float = _auc(fidelity.test_labels, reference.probabilities[test])
    auc_tflite = _auc(fidelity.test_labels, probabilities[test])
    agrees = (probabilities >= manifest.threshold) == (reference.probabilities >= manifest.threshold)
    pearson = np.array([heatmap_correlation(h, r) for h, r in zip(heatmaps, reference.heatmaps, strict=True)])
    overlap = [top_region_overlap(h, r) for h, r in zip(heatmaps, reference.heatmaps, strict=True)]
    return {
        "file": model.classifier_name,
        "runtime": model.runtime.label,
        "auc_float": auc_float,
        "auc_tflite": auc_tflite,
        "auc_drop": None if auc_float is None or auc_tflite is None else auc_float - auc_tflite,
        "agreement": float(agrees.mean()),
        "agreement_ci": cluster_interval(agrees.astype(np.float64), fidelity.clusters),
        "mean_abs_prob_diff": float(difference.mean()),
        "max_abs_prob_diff": float(difference.max()),
        "heatmap_pearson": float(pearson.mean()),
        "heatmap_pearson_ci": cluster_interval(pearson, fidelity.clusters),
        "heatmap_pearson_min": float(pearson.min()),
        "heatmap_top20_iou": float(np.mean(overlap)),
        "n_images": len(fidelity.images),
        "n_test_images": fidelity.n_test,
    }


def failures(result: dict[str, Any], limits: Thresholds) -> list[str]:
    """Why a variant fails the gate (empty: it passes)."""
    reasons = []
    if result["auc_drop"] is not None and result["auc_drop"] > limits.max_auc_drop:
        reasons.append(f"AUC drop {result['auc_drop']:.4f} > {limits.max_auc_drop}")
    if result["agreement"] < limits.min_agreement:
        reasons.append(f"agreement {result['agreement']:.4f} < {limits.min_agreement}")
    if result["heatmap_pearson"] < limits.min_heatmap_pearson:
        reasons.append(f"heatmap Pearson {result['heatmap_pearson']:.3f} < {limits.min_heatmap_pearson}")
    return reasons


def table(report: dict[str, dict[str, Any]]) -> str:
    def show(value: Any) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    lines = [
        f"{'variant':<9} {'AUC keras':>9} {'AUC tflite':>10} {'drop':>8} {'agree':>7} {'mean|dp|':>9} "
        f"{'max|dp|':>8} {'heat r':>7} {'top20':>6}  verdict"
    ]
    for variant, result in report.items():
        verdict = "; ".join(result["failures"]) or "pass"
        lines.append(
            f"{variant:<9} {show(result['auc_float']):>9} {show(result['auc_tflite']):>10} "
            f"{show(result['auc_drop']):>8} {result['agreement']:>7.4f} {result['mean_abs_prob_diff']:>9.4f} "
            f"{result['max_abs_prob_diff']:>8.4f} {result['heatmap_pearson']:>7.3f} "
            f"{result['heatmap_top20_iou']:>6.3f}  {verdict}"
        )
    return "\n".join(lines)
