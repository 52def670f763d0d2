"""``mammo-eval``: a run's metrics, calibration, decision threshold and plots.

Validation fixes the calibration temperature and the decision threshold (for a target sensitivity); test is then
scored with both unchanged, overall and per source. Everything lands in ``RUN_DIR/metrics.json`` and PNG plots.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import keras
import numpy as np
from numpy.typing import NDArray

from edge_app.errors import DataError
from edge_app.model import calibrated_probabilities
from edge_app.preprocess import PreprocessConfig
from mammo_train.data import ArraySet, float_batches, load_arrays
from mammo_train.metrics import binary_metrics, fit_temperature, threshold_for_sensitivity
from mammo_train.plots import plot_calibration, plot_confusion, plot_roc
from mammo_train.runfiles import RunFiles
from mammo_train.splits import SplitRow


def predict_logits(
    model: keras.Model, *image_sets: NDArray[np.uint8], batch_size: int = 32
) -> list[NDArray[np.float64]]:
    """The malignant logit per image of each set (the layer before the sigmoid, so temperature scaling is exact).
    Sets asked for together share one logit model: Keras traces its prediction step once per model (the 64 px
    hybrid: 10 s for a first set of 176 images, 2.6 s for a second)."""
    logit_model = keras.Model(model.input, model.get_layer("logit").output)
    return [
        np.asarray(logit_model.predict(float_batches(images, batch_size), verbose=0)[:, 0], np.float64)
        for images in image_sets
    ]


def _scores(data: ArraySet, probabilities: NDArray[np.float64], threshold: float, seed: int) -> dict[str, Any]:
    overall = binary_metrics(probabilities, data.labels, data.groups, threshold, seed)
    per_source = {}
    for source in sorted(set(data.sources)):
        mask = np.array([s == source for s in data.sources])
        groups = [g for g, keep in zip(data.groups, mask, strict=True) if keep]
        per_source[source] = binary_metrics(probabilities[mask], data.labels[mask], groups, threshold, seed)
    return {"overall": overall, "per_source": per_source}


def evaluate_run(
    run: Path,
    split: str = "test",
    target_sensitivity: float | None = None,
    arrays: dict[str, ArraySet] | None = None,
) -> dict[str, Any]:
    """Score `split` of a finished run and write ``metrics.json`` and plots; `arrays` reuses loaded images."""
    files = RunFiles(run)
    settings = files.read_settings()
    target = target_sensitivity if target_sensitivity is not None else settings.target_sensitivity
    rows = files.split_rows(settings)
    config = PreprocessConfig.from_dict(settings.preprocess)
    loaded = dict(arrays or {})
    for name in ("val", split):
        if name not in loaded:
            loaded[name] = load_arrays(_rows_of(rows, name), config, name)
    val, evaluated = loaded["val"], loaded[split]
    model = keras.models.load_model(files.model)
    val_logits, logits = predict_logits(model, val.images, evaluated.images)
    temperature = fit_temperature(val_logits, val.labels)
    val_probabilities = calibrated_probabilities(val_logits, temperature)
    threshold = threshold_for_sensitivity(val_probabilities, val.labels, target)
    probabilities = calibrated_probabilities(logits, temperature)
    scores = _scores(evaluated, probabilities, threshold, settings.seed)
    metrics: dict[str, Any] = {
        **_earlier_scores(files, temperature, threshold),
        split: scores,
        "validation": _scores(val, val_probabilities, threshold, settings.seed),
        "threshold": threshold,
        "target_sensitivity": target,
        "temperature": temperature,
        "arch": settings.arch,
        "input_size": settings.input_size,
    }
    files.metrics.write_text(json.dumps(metrics, indent=2))
    write_predictions(files.path / f"predictions_{split}.csv", _rows_of(rows, split), probabilities)
    plot_roc(evaluated.labels, probabilities, files.path / f"roc_{split}.png")
    plot_calibration(evaluated.labels, probabilities, files.path / f"calibration_{split}.png")
    plot_confusion(scores["overall"]["confusion_matrix"], files.path / f"confusion_{split}.png")
    return metrics


def _earlier_scores(files: RunFiles, temperature: float, threshold: float) -> dict[str, Any]:
    """Scores of other splits evaluated before with the same calibration (the same model and validation split), so
    `mammo-eval --split val` after training keeps the test scores `mammo-convert` reads."""
    if not files.metrics.is_file():
        return {}
    earlier = files.read_metrics()
    if (earlier.temperature, earlier.threshold) != (temperature, threshold):
        return {}
    return dict(earlier.scores)


def write_predictions(path: Path, rows: list[SplitRow], probabilities: NDArray[np.float64]) -> None:
    """Per-image calibrated probabilities (what cross-validation pools and a reader reviews)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("path", "source", "group", "label", "probability"))
        for row, probability in zip(rows, probabilities, strict=True):
            writer.writerow((row.path.as_posix(), row.source, row.group, row.label, f"{probability:.6f}"))


def _rows_of(rows: list[SplitRow], split: str) -> list[SplitRow]:
    chosen = [row for row in rows if row.split == split]
    if not chosen:
        raise DataError(f"the run's split has no {split!r} images")
    return chosen


def summary_line(metrics: dict[str, Any], split: str = "test") -> str:
    overall = metrics[split]["overall"]
    low, high = overall["roc_auc_ci"] or (float("nan"), float("nan"))
    return (
        f"{split}: AUC {overall['roc_auc']:.3f} (95% CI {low:.3f}-{high:.3f}), "
        f"sensitivity {overall['sensitivity']:.3f}, specificity {overall['specificity']:.3f} "
        f"at threshold {metrics['threshold']:.3f} (target sensitivity {metrics['target_sensitivity']:.2f}), "
        f"T={metrics['temperature']:.2f}, n={overall['n_images']} images / {overall['n_groups']} groups"
    )
