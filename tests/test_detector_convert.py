"""The detector into the bundle (`mammo_convert.detector`): converted to int8 and kept only if it proposes what the
Keras detector proposes, read on the device exactly as the gate read it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from modelbuild import tool

from edge_app.config import RegionsSection
from edge_app.decode import decode_file
from edge_app.detect import Candidate, DetectorInput, FilmFrame
from edge_app.regions import Region

pytestmark = pytest.mark.tensorflow
SPEC = DetectorInput(spacing_mm=0.8, canvas=(256, 224), stride=4)


def test_agreement_counts_what_a_device_shows_within_one_cell_and_the_froc_drop_compares_sensitivities() -> None:
    from mammo_convert.detector import DetectorLimits, failures, measure
    from mammo_train.detector_data import Canvas, FilmTruth

    frame = FilmFrame(0, 0, 1000, 0.1, False, 1.0)  # a heatmap cell is 4 canvas px: 40 film px
    truth = FilmTruth(Path("film.dcm"), "P1", 0.1, (Region("A", 500.0, 500.0, 50.0),), "synthetic")
    canvas = Canvas(truth, np.zeros((256, 224), np.uint8), frame, ())

    def found(*places: tuple[float, float, float]) -> list[Candidate]:
        return [Candidate(Region("A", x, y, 30.0), score) for x, y, score in places]

    reference = [found((500, 500, 0.9), (100, 100, 0.5), (800, 100, 0.05))]  # the last is below what a device shows
    near = [found((530, 510, 0.8), (300, 300, 0.6))]  # the mass within a cell, the second place not
    result = measure([canvas], reference, near, SPEC, RegionsSection(max_candidates=4, min_score=0.1))
    assert (result["candidates_shown"], result["agreement"]) == (2, 0.5)
    assert result["sensitivity_at_1_fp"] == {"keras": 1.0, "tflite": 1.0} and result["froc_drop_at_1_fp"] == 0.0
    assert failures(result, DetectorLimits()) == ["candidate agreement 0.500 < 0.9"]
    missed = measure([canvas], reference, [found((100, 100, 0.9))], SPEC, RegionsSection())
    assert missed["froc_drop_at_1_fp"] == 1.0 and failures(missed, DetectorLimits(0.0, 0.05)) == [
        "FROC drop at 1 FP/film 1.000 > 0.05"
    ]


def test_a_trained_detector_converts_and_the_device_reads_the_file_as_the_gate_did(tmp_path: Path) -> None:
    from edge_app.proposals import FilmDetector
    from edge_app.runtime import load_runtime, make_interpreter
    from mammo_convert.detector import convert_detector
    from mammo_train.films import generate_films

    films = generate_films(tmp_path / "films", 8, 192, seed=2)
    run = tmp_path / "run"
    settings = ["--folds", "0", "--epochs", "40", "--batch-size", "4", "--lr", "3e-3", "--canvas", "256x224"]
    trained = subprocess.run(
        [tool("mammo-train"), "detector", "--films", str(tmp_path / "films"), "--out", str(run), *settings, "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert trained.returncode == 0, trained.stderr
    staging = tmp_path / "staging"
    staging.mkdir()
    converted, report = convert_detector(run, tmp_path / "films", staging)
    assert converted.variant == "int8" and report["int8"]["failures"] == [], report
    assert report["int8"]["agreement"] >= 0.9 and report["int8"]["films"] == 8
    spec = converted.spec
    assert (spec.input, spec.min_spacing_mm, spec.max_spacing_mm) == (SPEC, 0.1, 0.1)
    assert spec.fidelity["variant"] == "int8" and spec.froc == {}  # no MIAS cross-validation in this run
    assert sorted(path.name for path in staging.iterdir()) == ["detector_int8.tflite"]
    assert sorted(converted.outputs) == ["heat", "log_radius"]
    interpreter = make_interpreter(load_runtime("auto"), staging / converted.name, threads=1)
    detector = FilmDetector(spec, converted.name, converted.outputs, interpreter)
    truth = json.loads(films[0].with_suffix("").with_suffix(".roi.json").read_text())["regions"]
    proposal = detector.propose(decode_file(films[0]), 4, 0.1)
    assert proposal.reason is None and 1 <= len(proposal.candidates) <= 4
    best = proposal.candidates[0].region
    assert any(np.hypot(best.cx - mass["x"], best.cy - mass["y"]) <= mass["radius"] for mass in truth)
