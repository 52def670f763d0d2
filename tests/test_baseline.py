"""`mammo-baseline`: the non-deep baseline finds a signal where there is one, its nulls behave as nulls, and on the
real MIAS crops it reproduces the committed report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from mammo_train.baseline import main, permute_within_folds, report_markdown, run_baseline

COMMITTED = REPO / "benchmarks" / "results" / "mias_null.json"


def test_on_synthetic_masses_the_baseline_beats_both_nulls(synth_root: Path) -> None:
    result = run_baseline(synth_root, 5, "patient", 0, 40, 96, None)
    baseline = result["baseline"]
    assert baseline["pooled_auc"] > 0.8  # spiculated vs round outlines: the gradient features see it
    assert baseline["p_retrained"] < 0.05 and baseline["p_fixed"] < 0.05  # no permutation came close
    assert abs(result["null_fixed_scores"]["pooled_auc"]["mean"] - 0.5) < 0.1  # chance centres on 0.5
    assert sum(fold["images"] for fold in result["fold_make_up"]) == len(list(synth_root.rglob("*.png")))


def test_the_null_permutes_labels_only_within_each_fold() -> None:
    """Every permutation keeps each fold's make-up (what the real stratified folds have), and moves labels."""
    rng = np.random.default_rng(0)
    labels = np.array([0] * 40 + [1] * 20)
    folds = np.tile(np.arange(5), 12)
    moved = 0
    for _ in range(20):
        shuffled = permute_within_folds(labels, folds, rng)
        for fold in range(5):
            assert sorted(shuffled[folds == fold]) == sorted(labels[folds == fold])
        moved += int(np.any(shuffled != labels))
    assert moved == 20


def test_the_committed_mias_report_is_what_the_tool_computes(mias_dir: Path, tmp_path: Path) -> None:
    """The real figures quoted in the README and training.md: the baseline's own AUCs and the folds' make-up (the
    nulls need 1000 permutations: their figures are checked for consistency, not recomputed)."""
    from mammo_train.mias import import_mias

    committed = json.loads(COMMITTED.read_text())
    data = tmp_path / "mias"
    import_mias(mias_dir, data, copies=0)
    out = tmp_path / "null.json"
    assert main(["--data", str(data), "--permutations", "20", "--out", str(out)]) == 0
    fresh = json.loads(out.read_text())
    assert fresh["fold_make_up"] == committed["fold_make_up"]
    for key in ("pooled_auc", "fold_aucs", "mean_fold_auc", "folds_below_half"):
        assert fresh["baseline"][key] == pytest.approx(committed["baseline"][key]), key
    assert out.with_suffix(".md").read_text() == report_markdown(fresh)
    assert committed["null_retrained"]["permutations"] == committed["null_fixed_scores"]["permutations"] >= 1000
    training = (REPO / "benchmarks" / "results" / "training.md").read_text()
    assert report_markdown(committed) in training  # the guide shows the committed table, whole
