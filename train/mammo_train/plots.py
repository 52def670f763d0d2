"""PNG plots of a run: ROC, calibration, confusion matrix, learning curve (matplotlib, no display needed)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from numpy.typing import NDArray
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score, roc_curve


def _save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_roc(labels: NDArray[Any], probabilities: NDArray[Any], path: Path) -> None:
    fpr, tpr, _ = roc_curve(labels, probabilities)
    figure, axes = plt.subplots(figsize=(4.5, 4.5))
    axes.plot(fpr, tpr, label=f"AUC {roc_auc_score(labels, probabilities):.3f}")
    axes.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    axes.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC")
    axes.legend(loc="lower right")
    _save(figure, path)


def plot_calibration(labels: NDArray[Any], probabilities: NDArray[Any], path: Path) -> None:
    frequency, confidence = calibration_curve(labels, probabilities, n_bins=10, strategy="uniform")
    figure, axes = plt.subplots(figsize=(4.5, 4.5))
    axes.plot(confidence, frequency, "o-", label="model")
    axes.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8, label="perfect")
    axes.set(xlabel="predicted probability (malignant)", ylabel="observed frequency", title="Calibration")
    axes.legend(loc="upper left")
    _save(figure, path)


def plot_confusion(matrix: list[list[int]], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(4, 3.6))
    axes.imshow(np.array(matrix), cmap="Blues")
    for (row, col), value in np.ndenumerate(np.array(matrix)):
        axes.text(col, row, str(value), ha="center", va="center")
    axes.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["benign", "malignant"], yticklabels=["benign", "malignant"])
    axes.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
    _save(figure, path)


def plot_learning_curve(history_csv: Path, path: Path) -> None:
    with history_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    epochs = [int(row["epoch"]) + 1 for row in rows]
    figure, axes = plt.subplots(figsize=(5.5, 4))
    for key, label in (("auc", "train AUC (batch statistics)"), ("val_auc", "validation AUC (fixed BN statistics)")):
        if key in rows[0]:
            axes.plot(epochs, [float(row[key]) for row in rows], "o-", label=label)
    axes.set(xlabel="epoch", ylabel="ROC AUC", ylim=(0.4, 1.01), title="Learning curve")
    axes.legend(loc="lower right")
    _save(figure, path)
