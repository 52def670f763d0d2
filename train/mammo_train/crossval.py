"""Grouped K-fold cross-validation: every architecture trained and tested on the same K patient-grouped folds.

Small datasets (58 MIAS masses) give single test splits of a dozen images, whose AUC means little alone. Each
fold's model is tested on its held-out fold (validation, temperature and threshold come from the next fold); the
calibrated test probabilities of all folds are pooled into one out-of-fold AUC with a cluster-bootstrap 95%
interval (resampling groups), reported beside the per-fold AUCs. ``OUT/cv_summary.{md,json}`` hold the table.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mammo_train.layout import ImageRecord
from mammo_train.metrics import binary_metrics
from mammo_train.runfiles import RunSettings
from mammo_train.splits import fold_splits, write_splits

THRESHOLD_FREE = ("roc_auc", "roc_auc_ci", "brier", "ece", "n_images", "n_groups", "n_malignant")


def _pooled(prediction_files: list[Path], seed: int) -> dict[str, Any]:
    probabilities, labels, groups = [], [], []
    for path in prediction_files:
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                probabilities.append(float(row["probability"]))
                labels.append(int(row["label"]))
                groups.append(row["group"])
    metrics = binary_metrics(np.array(probabilities), np.array(labels), groups, 0.5, seed)
    return {key: metrics[key] for key in THRESHOLD_FREE}  # each fold has its own threshold: none pooled


def cross_validate(
    records: list[ImageRecord],
    out: Path,
    settings: RunSettings,
    archs: list[str],
    folds: int,
    by: str,
    train_one: Callable[[Path, Path, RunSettings], dict[str, Any]],
) -> dict[str, Any]:
    """Train `archs` on each fold with `train_one(split_file, run_dir, settings)` and summarise."""
    summary: dict[str, Any] = {"folds": folds, "by": by, "archs": {}}
    splits = fold_splits(records, folds, settings.seed, by)
    for fold, rows in enumerate(splits):
        write_splits(rows, out / f"fold{fold}" / "splits.csv")
    for arch in archs:
        per_fold = []
        for fold in range(folds):
            run = out / f"fold{fold}" / arch
            metrics = train_one(out / f"fold{fold}" / "splits.csv", run, replace(settings, arch=arch))
            overall = metrics["test"]["overall"]
            per_fold.append({key: overall[key] for key in ("roc_auc", "sensitivity", "specificity", "n_images")})
        pooled = _pooled([out / f"fold{fold}" / arch / "predictions_test.csv" for fold in range(folds)], settings.seed)
        aucs = [fold["roc_auc"] for fold in per_fold if fold["roc_auc"] is not None]
        summary["archs"][arch] = {
            "pooled": pooled,
            "per_fold": per_fold,
            "fold_auc_mean": float(np.mean(aucs)) if aucs else None,
            "fold_auc_std": float(np.std(aucs, ddof=1)) if len(aucs) > 1 else None,
        }
    (out / "cv_summary.json").write_text(json.dumps(summary, indent=2))
    (out / "cv_summary.md").write_text(cv_table(summary))
    return summary


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def cv_table(summary: dict[str, Any]) -> str:
    lines = [
        f"Grouped {summary['folds']}-fold cross-validation (by {summary['by']}); pooled out-of-fold predictions.",
        "",
        "| arch | pooled AUC | 95% CI | fold AUCs (mean ± sd) | mean sensitivity | mean specificity | Brier |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for arch, result in summary["archs"].items():
        pooled = result["pooled"]
        low, high = pooled["roc_auc_ci"] or (None, None)
        folds = ", ".join(_number(fold["roc_auc"]) for fold in result["per_fold"])
        sens = [f["sensitivity"] for f in result["per_fold"] if f["sensitivity"] is not None]
        spec = [f["specificity"] for f in result["per_fold"] if f["specificity"] is not None]
        lines.append(
            f"| {arch} | {_number(pooled['roc_auc'])} | {_number(low)}-{_number(high)} | {folds} "
            f"({_number(result['fold_auc_mean'])} ± {_number(result['fold_auc_std'])}) | "
            f"{_number(float(np.mean(sens)) if sens else None)} | {_number(float(np.mean(spec)) if spec else None)} | "
            f"{_number(pooled['brier'])} |"
        )
    return "\n".join(lines) + "\n"
