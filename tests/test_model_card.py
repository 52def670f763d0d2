"""The model card's mass detector section (`mammo_convert.card`): the cross-validated FROC drawn and tabled with the
data it came from, the conversion gate's figures, and a plain line for a bundle without a detector."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from fakemodel import write_fake_bundle

from edge_app.manifest import load_manifest
from mammo_convert.card import write_model_card

FROC = {
    "source": "froc-mias.json",
    "grouped_by": "patient",
    "folds": 5,
    "hit_rule": "a candidate's centre inside the mass's circle",
    "data": {"films": 59, "patients": 55, "masses": 58, "normal_films": 4},
    "points": [
        {"fp_per_film": 0.25, "sensitivity": 0.4, "ci": [0.3, 0.5]},
        {"fp_per_film": 1.0, "sensitivity": 0.67, "ci": [0.55, 0.8]},
        {"fp_per_film": 4.0, "sensitivity": 0.9, "ci": [0.8, 1.0]},
    ],
}
FIDELITY = {
    "variant": "int8",
    "films": 16,
    "candidates_shown": 39,
    "agreement": 0.974,
    "sensitivity_at_1_fp": {"keras": 1.0, "tflite": 0.95},
}


def _card(tmp_path: Path, detector: bool, **spec: object) -> str:
    bundle = write_fake_bundle(tmp_path / "bundle", patch_side_px=(48, 64), detector=detector)
    manifest = load_manifest(bundle)
    if manifest.detector is not None:
        manifest = replace(manifest, detector=replace(manifest.detector, **spec))
    return write_model_card(bundle, manifest, {}, tmp_path / "run").read_text()


def test_the_card_draws_and_tables_the_detectors_froc_with_its_data_and_gate(tmp_path: Path) -> None:
    page = _card(tmp_path, True, froc=FROC, fidelity=FIDELITY)
    section = page[page.index("<h2>Mass detector</h2>") :]
    section = section[: section.index("<h2>", 5)]
    assert "resampled to 0.8 mm per pixel on a 48 x 64 canvas" in section
    assert "films of 0.05-0.5 mm pixel spacing" in section
    data = "patient (59 films, 55 patients, 58 masses, 4 normal films; from\n<code>froc-mias.json</code>)"
    assert f"5-fold cross-validation grouped by\n{data}" in section
    assert "A hit: a candidate&#x27;s centre inside the mass&#x27;s circle." in section
    rows = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>", section)
    assert rows == [("0.25", "0.40", "0.30-0.50"), ("1", "0.67", "0.55-0.80"), ("4", "0.90", "0.80-1.00")]
    (line,) = re.findall(r'<polyline points="([^"]*)"', section)  # log axis: 0.25, 1, 4 evenly spaced
    assert line == "36.0,124.8 180.0,84.8 324.0,50.8"  # y = 184 - 148 x sensitivity
    assert re.findall(r'<line x1="180.0" y1="([^"]*)" x2="180.0" y2="([^"]*)"', section) == [("102.6", "65.6")]
    assert "on 16 films it proposes 0.974 of the 39 candidates the float detector shows" in section
    assert "1.00 (float) and 0.95 (shipped)" in section


def test_the_card_says_when_a_detector_has_no_froc_or_the_bundle_no_detector(tmp_path: Path) -> None:
    unmeasured = _card(tmp_path / "a", True)
    assert "No cross-validated FROC was measured for this detector" in unmeasured and "<svg" not in unmeasured
    assert "Shipped as" not in unmeasured  # no gate figures recorded
    without = _card(tmp_path / "b", False)
    assert "This bundle has no detector: a film that comes without marked regions is answered" in without
