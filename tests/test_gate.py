"""The fidelity gate's arithmetic, without a model: a fake device model answers from a table, so every figure the
gate reports and every threshold it applies is checked against numbers worked out here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the gate needs the train extra")

from mammo_convert import gate
from mammo_convert.gate import FidelitySet, Reference, Thresholds, cluster_interval, failures, fidelity_set
from mammo_train.data import ArraySet


def test_the_thresholds_are_the_products() -> None:
    assert Thresholds() == Thresholds(max_auc_drop=0.01, min_agreement=0.98, min_heatmap_pearson=0.90)


def test_the_fidelity_set_is_test_then_validation_images_and_their_three_flips() -> None:
    test_images = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    val_images = np.arange(100, 100 + 2 * 3, dtype=np.uint8).reshape(1, 2, 3)
    test = ArraySet(test_images, np.array([0, 1], np.int32), [])
    val = ArraySet(val_images, np.array([1], np.int32), [])
    fidelity = fidelity_set(test, val)
    originals = np.concatenate([test_images, val_images])
    assert fidelity.images.shape == (12, 2, 3) and fidelity.images.flags.c_contiguous
    np.testing.assert_array_equal(fidelity.images[:3], originals)
    np.testing.assert_array_equal(fidelity.images[3:6], originals[:, :, ::-1])
    np.testing.assert_array_equal(fidelity.images[6:9], originals[:, ::-1, :])
    np.testing.assert_array_equal(fidelity.images[9:], originals[:, ::-1, ::-1])
    assert fidelity.clusters.tolist() == [0, 1, 2] * 4  # a flip belongs to its source image
    assert fidelity.test_labels.tolist() == [0, 1] and fidelity.n_test == 2


def test_the_interval_resamples_whole_clusters_and_weights_images() -> None:
    values = np.array([1.0, 1.0, 1.0, 0.0])
    clusters = np.array([0, 0, 0, 1])  # cluster 0 holds three images
    low, high = cluster_interval(values, clusters, resamples=4000, seed=1)
    # Resampling two clusters: the mean is 0 (both picks cluster 1), 3/4 (one each) or 1 (both cluster 0).
    assert (low, high) == (0.0, 1.0)
    constant = cluster_interval(np.full(6, 0.25), np.array([0, 0, 1, 1, 2, 2]))
    assert constant == (0.25, 0.25)
    spread = np.linspace(0.0, 1.0, 40)
    narrow = cluster_interval(spread, np.arange(40), resamples=2000, seed=0)
    assert narrow == cluster_interval(spread, np.arange(40), resamples=2000, seed=0)  # seeded: reproducible
    assert 0.25 < narrow[0] < 0.5 < narrow[1] < 0.75  # a 95% interval of a mean of 40 values spread over [0, 1]
    assert narrow != cluster_interval(spread, np.arange(40), resamples=2000, seed=1)
    # the defaults (2000 resamples, seed 0, the 2.5th and 97.5th percentiles), pinned: reports stay comparable
    assert cluster_interval(spread, np.arange(40)) == pytest.approx((0.4064102564102564, 0.5891346153846151), abs=1e-12)


@dataclass
class _Answer:
    probability: float
    heatmap: np.ndarray | None


class _TableModel:
    """Stands in for `EdgeModel`: answers image i with row i of a table, recording how it was built."""

    table: ClassVar[list[_Answer]] = []
    built: ClassVar[list[tuple[Any, ...]]] = []

    def __init__(self, bundle: Path, manifest: Any, variant: str, runtime: str, threads: int, heatmaps: bool) -> None:
        type(self).built.append((bundle, manifest, variant, runtime, threads, heatmaps))
        self.classifier_name = f"classifier_{variant}.tflite"
        self.runtime = type("Runtime", (), {"label": "fake 1.0"})()

    def predict(self, image: np.ndarray) -> _Answer:
        return type(self).table[int(image.flat[0])]


def _maps(*peaks: int) -> list[np.ndarray]:
    maps = []
    for peak in peaks:
        heat = np.zeros((5, 5), np.float32)
        heat.flat[peak] = 1.0
        heat.flat[(peak + 1) % 25] = 0.5
        maps.append(heat)
    return maps


def test_measure_variant_reports_every_figure_against_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_app.gradcam import heatmap_correlation, top_region_overlap

    monkeypatch.setattr(gate, "EdgeModel", _TableModel)
    images = np.arange(6, dtype=np.uint8).reshape(6, 1, 1)  # each image names its row in the table
    fidelity = FidelitySet(images, np.array([0, 1, 2, 0, 1, 2]), np.array([0, 1, 1], np.int32))
    reference_maps = _maps(0, 1, 2, 3, 4, 5)
    device_maps = _maps(0, 1, 7, 3, 4, 12)
    reference = Reference(np.array([0.2, 0.7, 0.9, 0.1, 0.6, 0.8]), np.stack(reference_maps))
    device = [0.25, 0.2, 0.95, 0.1, 0.62, 0.3]
    _TableModel.table = [_Answer(p, h) for p, h in zip(device, device_maps, strict=True)]
    _TableModel.built = []
    manifest = type("Manifest", (), {"threshold": 0.5})()

    result = gate.measure_variant(Path("b"), manifest, "int8", fidelity, reference, threads=3)  # type: ignore[arg-type]

    assert _TableModel.built == [(Path("b"), manifest, "int8", "auto", 3, True)]
    assert result["file"] == "classifier_int8.tflite" and result["runtime"] == "fake 1.0"
    assert result["auc_float"] == 1.0  # test labels 0, 1, 1 against 0.2, 0.7, 0.9
    assert result["auc_tflite"] == 0.5  # against 0.25, 0.2, 0.95: one of the two pairs is ordered
    assert result["auc_drop"] == 0.5
    agrees = [True, False, True, True, True, False]  # at 0.5: 0.2 vs 0.7 and 0.3 vs 0.8 disagree
    assert result["agreement"] == pytest.approx(np.mean(agrees))
    differences = np.abs(np.array(device) - reference.probabilities)
    assert result["mean_abs_prob_diff"] == pytest.approx(differences.mean())
    assert result["max_abs_prob_diff"] == pytest.approx(0.5)
    pearson = [heatmap_correlation(d, r) for d, r in zip(device_maps, reference_maps, strict=True)]
    assert result["heatmap_pearson"] == pytest.approx(np.mean(pearson))
    assert result["heatmap_pearson_min"] == pytest.approx(min(pearson)) and min(pearson) < max(pearson)
    overlap = [top_region_overlap(d, r) for d, r in zip(device_maps, reference_maps, strict=True)]
    assert result["heatmap_top20_iou"] == pytest.approx(np.mean(overlap))
    assert result["agreement_ci"] == cluster_interval(np.array(agrees, np.float64), fidelity.clusters)
    assert result["heatmap_pearson_ci"] == cluster_interval(np.array(pearson), fidelity.clusters)
    assert (result["n_images"], result["n_test_images"]) == (6, 3)


def test_one_class_in_the_test_split_gives_no_auc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gate, "EdgeModel", _TableModel)
    maps = _maps(0, 1)
    _TableModel.table = [_Answer(0.3, maps[0]), _Answer(0.6, maps[1])]
    fidelity = FidelitySet(np.arange(2, dtype=np.uint8).reshape(2, 1, 1), np.array([0, 1]), np.array([1, 1], np.int32))
    reference = Reference(np.array([0.3, 0.6]), np.stack(maps))
    result = gate.measure_variant(Path("b"), type("M", (), {"threshold": 0.5})(), "float32", fidelity, reference, 1)  # type: ignore[arg-type]
    assert result["auc_float"] is None and result["auc_tflite"] is None and result["auc_drop"] is None
    assert result["agreement"] == 1.0 and result["max_abs_prob_diff"] == 0.0
    assert result["heatmap_pearson"] == pytest.approx(1.0)


def _result(**changes: Any) -> dict[str, Any]:
    figures = {"auc_drop": 0.0, "agreement": 1.0, "heatmap_pearson": 1.0}
    return {**figures, **changes}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, []),
        ({"auc_drop": 0.01, "agreement": 0.98, "heatmap_pearson": 0.90}, []),  # each bar is inclusive
        ({"auc_drop": None}, []),  # no AUC (one class): nothing to compare
        ({"auc_drop": 0.0101}, ["AUC drop 0.0101 > 0.01"]),
        ({"agreement": 0.97995}, ["agreement 0.9799 < 0.98"]),
        ({"heatmap_pearson": 0.8995}, ["heatmap Pearson 0.899 < 0.9"]),  # three decimals, rounded half to even
        (
            {"auc_drop": 0.5, "agreement": 0.5, "heatmap_pearson": 0.5},
            ["AUC drop 0.5000 > 0.01", "agreement 0.5000 < 0.98", "heatmap Pearson 0.500 < 0.9"],
        ),
    ],
)
def test_failures_name_each_threshold_missed_in_order(changes: dict[str, Any], expected: list[str]) -> None:
    assert failures(_result(**changes), Thresholds()) == expected


def test_the_table_shows_every_figure_and_the_verdict() -> None:
    passing = {
        "auc_float": 0.91234,
        "auc_tflite": 0.90234,
        "auc_drop": 0.01,
        "agreement": 0.99,
        "mean_abs_prob_diff": 0.01234,
        "max_abs_prob_diff": 0.1,
        "heatmap_pearson": 0.95,
        "heatmap_top20_iou": 0.8,
        "failures": [],
    }
    failing = {**passing, "auc_float": None, "auc_tflite": None, "auc_drop": None, "failures": ["a < b", "c > d"]}
    header, first, second = gate.table({"float32": passing, "int8": failing}).splitlines()
    assert header.split() == [
        "variant",
        "AUC",
        "keras",
        "AUC",
        "tflite",
        "drop",
        "agree",
        "mean|dp|",
        "max|dp|",
        "heat",
        "r",
        "top20",
        "verdict",
    ]
    assert first == "float32      0.9123     0.9023   0.0100  0.9900    0.0123   0.1000   0.950  0.800  pass"
    assert second == "int8            n/a        n/a      n/a  0.9900    0.0123   0.1000   0.950  0.800  a < b; c > d"


def test_a_probability_at_the_threshold_is_called_malignant_by_both_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """The device calls malignant at p >= threshold; the gate compares the two models' calls by the same rule."""
    monkeypatch.setattr(gate, "EdgeModel", _TableModel)
    maps = _maps(0, 1)
    _TableModel.table = [_Answer(0.5, maps[0]), _Answer(0.7, maps[1])]
    fidelity = FidelitySet(np.arange(2, dtype=np.uint8).reshape(2, 1, 1), np.array([0, 1]), np.array([1, 1], np.int32))
    reference = Reference(np.array([0.7, 0.5]), np.stack(maps))
    result = gate.measure_variant(Path("b"), type("M", (), {"threshold": 0.5})(), "int8", fidelity, reference, 1)  # type: ignore[arg-type]
    assert result["agreement"] == 1.0
