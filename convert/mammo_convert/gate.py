"""The fidelity gate: every converted variant measured against the Keras float model on the run's test split.

Per variant: ROC AUC of Keras and of the device path, the drop, label agreement at the stored threshold, mean and
max |calibrated probability difference|; heatmaps: Pearson correlation and top-20% overlap between the device's
fused Grad-CAM and the Keras GradientTape reference. The device path is `edge_app.model.EdgeModel.predict`, the
very function the daemon runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import roc_auc_score

from edge_app.manifest import Manifest
from edge_app.model import EdgeModel
from mammo_train.data import ArraySet
from mammo_train.explain import heatmap_correlation, top_region_overlap


@dataclass(frozen=True)
class Thresholds:
    max_auc_drop: float = 0.01
    min_agreement: float = 0.98
    min_heatmap_pearson: float = 0.90


@dataclass(frozen=True)
class Reference:
    """The Keras float model's calibrated probabilities and fused heatmaps on the test images."""

    probabilities: NDArray[np.float64]
    heatmaps: NDArray[np.float32]


def _auc(labels: NDArray[Any], scores: NDArray[Any]) -> float | None:
    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else None


def measure_variant(
    bundle: Path, manifest: Manifest, variant: str, data: ArraySet, reference: Reference, threads: int
) -> dict[str, Any]:
    model = EdgeModel(bundle, manifest, variant, "auto", threads, heatmaps=True)
    predictions = [model.predict(image) for image in data.images]
    probabilities = np.array([p.probability for p in predictions])
    heatmaps = [p.heatmap for p in predictions if p.heatmap is not None]
    difference = np.abs(probabilities - reference.probabilities)
    auc_float, auc_tflite = _auc(data.labels, reference.probabilities), _auc(data.labels, probabilities)
    agreement = np.mean((probabilities >= manifest.threshold) == (reference.probabilities >= manifest.threshold))
    pearson = [heatmap_correlation(h, r) for h, r in zip(heatmaps, reference.heatmaps, strict=True)]
    overlap = [top_region_overlap(h, r) for h, r in zip(heatmaps, reference.heatmaps, strict=True)]
    return {
        "file": model.classifier_name,
        "runtime": model.runtime.label,
        "auc_float": auc_float,
        "auc_tflite": auc_tflite,
        "auc_drop": None if auc_float is None or auc_tflite is None else auc_float - auc_tflite,
        "agreement": float(agreement),
        "mean_abs_prob_diff": float(difference.mean()),
        "max_abs_prob_diff": float(difference.max()),
        "heatmap_pearson": float(np.mean(pearson)),
        "heatmap_pearson_min": float(np.min(pearson)),
        "heatmap_top20_iou": float(np.mean(overlap)),
        "n_images": len(data),
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
