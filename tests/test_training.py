"""Training and evaluation: the learning check, honest metrics, the run directory, Grad-CAM sanity."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
from modelbuild import RECIPES, tool

pytest.importorskip("tensorflow", reason="training needs the train extra (TensorFlow)")

from mammo_train.cli import eval_main
from mammo_train.explain import explain_run

pytestmark = pytest.mark.slow


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_learning_check_reaches_auc_075(trained_run: Path) -> None:
    metrics = _metrics(trained_run)
    assert metrics["test"]["overall"]["roc_auc"] >= 0.75, metrics["test"]["overall"]


def test_shuffled_labels_do_not_learn(shuffled_run: Path) -> None:
    """With labels shuffled between groups there is nothing to learn: chance (0.5) lies inside the AUC's own 95%
    interval (a bootstrap over the test masses), whatever the run's exact figure."""
    low, high = _metrics(shuffled_run)["test"]["overall"]["roc_auc_ci"]
    assert low <= 0.5 <= high, (low, high)


def test_run_directory_holds_everything(trained_run: Path) -> None:
    for name in (
        "model.keras",
        "config.json",
        "splits.csv",
        "history.csv",
        "metrics.json",
        "learning_curve.png",
        "roc_test.png",
        "calibration_test.png",
        "confusion_test.png",
    ):
        assert (trained_run / name).is_file(), name
    config = json.loads((trained_run / "config.json").read_text())
    assert len(config["settings"]["split_sha256"]) == 64
    assert config["settings"]["preprocess"]["input_size"] == 96
    assert "tensorflow" in config["versions"]
    with (trained_run / "history.csv").open() as handle:
        history = list(csv.DictReader(handle))
    assert len(history) >= 1 and "val_auc" in history[0]


def test_metrics_follow_the_interface(trained_run: Path) -> None:
    metrics = _metrics(trained_run)
    overall = metrics["test"]["overall"]
    for key in (
        "roc_auc",
        "roc_auc_ci",
        "sensitivity",
        "specificity",
        "ppv",
        "npv",
        "f1",
        "brier",
        "ece",
        "accuracy",
        "confusion_matrix",
    ):
        assert key in overall, key
    low, high = overall["roc_auc_ci"]
    assert low <= overall["roc_auc"] <= high
    assert set(metrics["test"]["per_source"]) == {"SYNTH"}
    assert 0 < metrics["threshold"] < 1 and metrics["target_sensitivity"] == 0.9 and metrics["temperature"] > 0
    assert metrics["validation"]["overall"]["sensitivity"] >= 0.9  # the threshold was chosen for it on validation


def test_mammo_eval_rewrites_metrics(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    metrics = trained_run / "metrics.json"
    before = _metrics(trained_run)
    os.utime(metrics, ns=(0, 0))  # the run is shared with other tests: mark the file rather than spoil it
    assert eval_main([str(trained_run), "--gradcam", "0"]) == 0
    assert "test: AUC" in capsys.readouterr().out
    assert metrics.stat().st_mtime_ns > 0  # written again
    after = _metrics(trained_run)
    assert after["test"]["overall"]["roc_auc"] == pytest.approx(before["test"]["overall"]["roc_auc"])


def test_gradcam_sanity(trained_run: Path) -> None:
    """Overlays are written; heatmaps find the mass (and, stricter, its body) far more often than a random peak
    would; a randomised model's heatmaps differ.

    "More often than chance" is a significance test, not a ratio picked by hand: the chance of at least this many
    peaks inside the circles if each landed at random (the Poisson-binomial tail over each image's circle share) is
    below 1e-3. Deterministic training gives other weights on another instruction set, so the figure must hold on
    any CPU: measured on this recipe, p = 6.6e-14 (mass) and 5.4e-18 (body) natively on an AVX-512 host, 3.3e-8 and
    7.0e-17 with TensorFlow limited to AVX2 (benchmarks/results/gradcam-sanity.json), where the old "twice and three
    times chance" ratios had only 2.4x against 2x left. The CI model trains 4 epochs from scratch at 96 px (3x3
    maps); the >= 80% acceptance figure is a separate measurement on a trained model
    (benchmarks/results/training.md).
    """
    report = explain_run(trained_run, "test", samples=6)
    assert report["overlays"] == 6
    assert len(list((trained_run / "gradcam").glob("*.png"))) == 6
    assert report["malignant_correct_with_truth"] >= 10
    assert report["malignant_correct_with_body_truth"] == report["malignant_correct_with_truth"]
    assert report["body_chance_rate"] < 0.15 and report["chance_rate"] < 0.4, report
    assert report["peak_in_mass_rate"] > report["chance_rate"] and report["peak_in_mass_p_value"] < 1e-3, report
    assert report["peak_in_body_rate"] > report["body_chance_rate"] and report["peak_in_body_p_value"] < 1e-3, report
    assert report["randomised_heatmap_correlation_mean"] < 0.5, report


def test_two_deterministic_runs_give_bit_identical_test_logits(plumbing_run: Path, tmp_path: Path) -> None:
    """`mammo-train --deterministic` twice on the same data, split and seed: the same test logits, bit for bit
    (the plumbing run, trained again in a process of its own; the mechanism does not depend on size)."""
    import keras
    import numpy as np

    from edge_app.preprocess import PreprocessConfig
    from mammo_train.data import load_arrays
    from mammo_train.evaluate import predict_logits
    from mammo_train.splits import read_splits

    recipe = RECIPES["plumbing"]
    second = tmp_path / "second"
    subprocess.run([tool("mammo-train"), *recipe.train_arguments(plumbing_run / "splits.csv", second)], check=True)
    rows = read_splits(plumbing_run / "splits.csv")
    test = load_arrays([row for row in rows if row.split == "test"], PreprocessConfig(input_size=recipe.size))
    logits = []
    for run in (plumbing_run, second):
        assert json.loads((run / "config.json").read_text())["settings"]["deterministic"] is True
        logits.extend(predict_logits(keras.models.load_model(run / "model.keras"), test.images))
    assert len(test) >= 8 and np.ptp(logits[0]) > 0  # real, differing answers, not a constant
    assert np.array_equal(logits[0], logits[1]), np.abs(logits[0] - logits[1]).max()
