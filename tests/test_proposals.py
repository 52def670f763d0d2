"""Regions the device proposes on a film (`edge_app.proposals`), through the analyser and the result JSON: suggested
for the reader, or classified as the device's own regions; none, with the reason, for a film outside the detector's
scope; nothing changes for a bundle without a detector. The fake detector's heatmap is the canvas's brightness."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from dicomfiles import encode, mammogram
from fakemodel import DETECTOR_FILM_MASS as MASS
from fakemodel import FAKE_RUNTIME, detector_film, write_fake_bundle
from jsonschema import validate

import edge_app.model as model_module
from edge_app.config import Config, IngestSection, PathsSection, RegionsSection
from edge_app.decode import decode_bytes
from edge_app.errors import BundleError
from edge_app.manifest import load_manifest
from edge_app.model import EdgeModel
from edge_app.proposals import FilmDetector
from edge_app.scope import ScopeLimits
from edge_app.service.analyse import CLASSIFIED, NEEDS_ROI, Analysis, ModelAnalyser
from edge_app.service.daemon import Daemon
from edge_app.service.lifecycle import ScanState, advance, received
from edge_app.service.writer import result_document

SCHEMA = json.loads((Path(__file__).parents[1] / "edge_app" / "schemas" / "result.schema.json").read_text())


@pytest.fixture(autouse=True)
def fake_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(model_module, "load_runtime", lambda name: FAKE_RUNTIME)
    yield


def _analyser(tmp_path: Path, regions: RegionsSection, detector: bool = True) -> ModelAnalyser:
    bundle = write_fake_bundle(tmp_path / "bundle", patch_side_px=(48, 64), detector=detector)
    model = EdgeModel.load(bundle, "float32")
    found = FilmDetector.load(bundle, model.manifest, model.runtime, 1)
    return ModelAnalyser(model, 10**7, ScopeLimits.resolve(model.manifest.scope), found, regions)


def _document(analysis: Analysis, analyser: ModelAnalyser) -> dict[str, object]:
    record = advance(advance(received("film.dcm"), ScanState.CLAIMED), ScanState.ANALYSED, result_stem="film")
    document = result_document(record, analysis, analyser.identity)
    validate(document, SCHEMA)
    return document


def test_a_film_without_regions_is_answered_needs_roi_with_the_detectors_suggestions(tmp_path: Path) -> None:
    analyser = _analyser(tmp_path, RegionsSection(propose="suggest", max_candidates=4, min_score=0.9))
    analysis = analyser.analyse(encode(mammogram(detector_film())), "film.dcm")
    assert analysis.status == NEEDS_ROI and analysis.regions == () and analysis.suggestions_reason is None
    (first,) = analysis.suggestions  # the mass, and nothing else as bright
    x, y, _ = MASS
    assert abs(first.region.cx - x) <= 16 and abs(first.region.cy - y) <= 16  # within two heatmap cells (0.8 mm x 4)
    assert first.region.radius == pytest.approx(6.0 / 0.125) and first.score >= 0.9
    document = _document(analysis, analyser)
    assert document["suggestions"] == [
        {
            "label": "A",
            "x": round(first.region.cx, 1),
            "y": round(first.region.cy, 1),
            "radius": 48.0,
            "score": round(first.score, 6),
        }
    ]
    assert "detect_ms" in analysis.timings_ms


def test_at_most_max_candidates_are_suggested_highest_first(tmp_path: Path) -> None:
    analyser = _analyser(tmp_path, RegionsSection(propose="suggest", max_candidates=3, min_score=0.0))
    suggestions = analyser.analyse(encode(mammogram(detector_film())), "film.dcm").suggestions
    assert [candidate.region.label for candidate in suggestions] == ["A", "B", "C"]
    scores = [candidate.score for candidate in suggestions]
    assert scores == sorted(scores, reverse=True) and scores[0] >= 0.9


def test_in_answer_mode_each_proposed_region_is_classified_as_the_devices(tmp_path: Path) -> None:
    analyser = _analyser(tmp_path, RegionsSection(propose="answer", max_candidates=4, min_score=0.9))
    analysis = analyser.analyse(encode(mammogram(detector_film())), "film.dcm")
    assert analysis.status == CLASSIFIED and analysis.suggestions == ()
    (region,) = analysis.regions
    assert (region.marked_by, region.marked_as, region.reader) == ("device", "circle", None)
    assert region.detector_score is not None and region.detector_score >= 0.9
    entry = _document(analysis, analyser)["regions"][0]  # type: ignore[index]
    assert entry["marked_by"] == "device" and entry["detector_score"] == round(region.detector_score, 6)


def test_in_answer_mode_a_film_with_no_candidate_stays_needs_roi_and_says_why(tmp_path: Path) -> None:
    analyser = _analyser(tmp_path, RegionsSection(propose="answer", max_candidates=4, min_score=1.0))
    film = detector_film()
    film[film == 3900] = 1900  # no mass
    analysis = analyser.analyse(encode(mammogram(film)), "film.dcm")
    assert analysis.status == NEEDS_ROI and analysis.suggestions == ()
    assert analysis.suggestions_reason == "the detector found no candidate scoring 1 or more"


@pytest.mark.parametrize(
    ("film", "reason"),
    [
        (
            lambda pixels: encode(mammogram(pixels, PixelSpacing=[1.0, 1.0], ImagerPixelSpacing=[1.0, 1.0])),
            "the film's pixel spacing 1 mm is outside the 0.05-0.5 mm the detector was trained on",
        ),
        (
            lambda pixels: encode(mammogram(pixels, PixelSpacing=[0.1, 0.2], ImagerPixelSpacing=[0.1, 0.2])),
            "the film's pixels are not square (0.1 x 0.2 mm): the detector works at one spacing",
        ),
        (
            lambda pixels: cv2.imencode(".png", (pixels // 16).astype(np.uint8))[1].tobytes(),
            "the film's pixel spacing is unknown (its file gives none): the detector works at a known spacing",
        ),
    ],
    ids=["coarse", "not_square", "png"],
)
def test_a_film_outside_the_detectors_scope_gets_no_suggestions_and_the_reason(
    tmp_path: Path, film: object, reason: str
) -> None:
    analyser = _analyser(tmp_path, RegionsSection())
    analysis = analyser.analyse(film(detector_film()), "film.dcm")  # type: ignore[operator]
    assert analysis.status == NEEDS_ROI and analysis.suggestions == () and analysis.suggestions_reason == reason
    _document(analysis, analyser)


@pytest.mark.parametrize("detector", [False, True], ids=["no_detector", "proposing_off"])
def test_without_a_detector_or_with_proposing_off_a_film_is_needs_roi_as_before(tmp_path: Path, detector: bool) -> None:
    analyser = _analyser(tmp_path, RegionsSection(propose="off"), detector=detector)
    analysis = analyser.analyse(encode(mammogram(detector_film())), "film.dcm")
    assert (analysis.status, analysis.suggestions, analysis.suggestions_reason) == (NEEDS_ROI, (), None)
    document = _document(analysis, analyser)
    assert (document["suggestions"], document["suggestions_reason"]) == ([], None)
    assert "detect_ms" not in analysis.timings_ms


def test_a_detector_spec_and_its_file_come_together(tmp_path: Path) -> None:
    bundle = write_fake_bundle(tmp_path / "bundle", detector=True)
    values = json.loads((bundle / "manifest.json").read_text())
    for changed, message in (
        ({**values, "detector": None}, "the manifest's detector and its detector file come together"),
        (
            {**values, "detector": {**values["detector"], "min_spacing_mm": 0.6}},
            "manifest detector spacing range 0.6..0.5 mm is not a range",
        ),
        (
            {**values, "detector": {**values["detector"], "min_spacing_mm": 0}},
            "manifest detector spacing range 0..0.5 mm is not a range",
        ),
        ({**values, "detector": {**values["detector"], "colour": 1}}, "manifest detector: unknown key(s) 'colour'"),
    ):
        (bundle / "manifest.json").write_text(json.dumps(changed))
        with pytest.raises(BundleError, match=f"^{message}".replace("(", r"\(").replace(")", r"\)")):
            load_manifest(bundle)
    one_spacing = {**values, "detector": {**values["detector"], "min_spacing_mm": 0.5, "max_spacing_mm": 0.5}}
    (bundle / "manifest.json").write_text(json.dumps(one_spacing))
    detector = load_manifest(bundle).detector  # films of one spacing only: a range of one value
    assert detector is not None and (detector.min_spacing_mm, detector.max_spacing_mm) == (0.5, 0.5)


def test_the_detector_runs_from_its_verified_bytes_on_the_devices_threads(tmp_path: Path) -> None:
    bundle = write_fake_bundle(tmp_path / "bundle", detector=True)
    manifest = load_manifest(bundle)
    detector = FilmDetector.load(bundle, manifest, FAKE_RUNTIME, 3)
    assert detector is not None and detector._interpreter.num_threads == 3
    file = bundle / "detector_float32.tflite"
    file.write_bytes(file.read_bytes() + b" ")  # changed after the manifest's check
    with pytest.raises(BundleError, match=r"^detector_float32.tflite does not match its sha256 in the manifest"):
        FilmDetector.load(bundle, manifest, FAKE_RUNTIME, 3)


def test_a_detector_whose_canvas_the_file_does_not_take_is_refused(tmp_path: Path) -> None:
    bundle = write_fake_bundle(tmp_path / "bundle", detector=True)
    values = json.loads((bundle / "manifest.json").read_text())
    values["detector"]["input"]["canvas"] = [64, 64]
    (bundle / "manifest.json").write_text(json.dumps(values))
    manifest = load_manifest(bundle)
    with pytest.raises(BundleError, match=r"^detector_float32.tflite takes input \(1, 64, 48, 1\)"):
        FilmDetector.load(bundle, manifest, FAKE_RUNTIME, 1)


@pytest.mark.parametrize("propose", ["suggest", "answer"])
def test_synthetic_films_through_the_daemon_get_suggestions_or_the_devices_answers(
    tmp_path: Path, propose: str
) -> None:
    """Films dropped without their regions: every one answered needs_roi with at most max_candidates suggestions,
    or, answering, every proposed region classified as the device's."""
    from mammo_train.films import generate_films

    films = generate_films(tmp_path / "films", 3, 96, seed=5, size=(832, 1024))
    folders = {name: tmp_path / name for name in ("inbox", "results", "archive", "quarantine", "state", "outbox")}
    regions = RegionsSection(propose=propose, max_candidates=2, min_score=0.0)
    config = Config(
        paths=PathsSection(**folders),
        ingest=IngestSection(settle_seconds=0.0, sidecar_wait=0.0, min_free_mb=0),
        regions=regions,
    )
    folders["inbox"].mkdir(parents=True)
    for film in films:
        shutil.copy(film, folders["inbox"] / film.name)  # the film alone, its regions left behind
    Daemon(config, _analyser(tmp_path, regions), exit_when_idle=True).run()
    results = [json.loads((folders["results"] / f"{film.stem}.json").read_text()) for film in films]
    for result in results:
        validate(result, SCHEMA)
        if propose == "suggest":
            assert result["status"] == "needs_roi" and 1 <= len(result["suggestions"]) <= 2
        else:
            assert result["status"] == "classified" and result["suggestions"] == []
            assert 1 <= len(result["regions"]) <= 2 and {r["marked_by"] for r in result["regions"]} == {"device"}
    assert sorted(path.name for path in folders["archive"].iterdir()) == sorted(film.name for film in films)


def test_once_lists_the_suggestions_under_a_film_left_needs_roi_and_why_a_film_got_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_app.cli import main

    bundle = write_fake_bundle(tmp_path / "bundle", patch_side_px=(48, 64), detector=True)
    films = tmp_path / "films"
    films.mkdir()
    (films / "film.dcm").write_bytes(encode(mammogram(detector_film())))
    far = mammogram(detector_film(), PixelSpacing=[1.0, 1.0], ImagerPixelSpacing=[1.0, 1.0])
    (films / "far.dcm").write_bytes(encode(far))
    command = ["once", "--model", str(bundle), "--variant", "float32", "--results", str(tmp_path / "out")]
    assert main([*command, str(films / "far.dcm"), str(films / "film.dcm")]) == 1  # neither classified
    lines = capsys.readouterr().out.splitlines()
    x, y, _ = MASS
    suggested = [line.split() for line in lines if line.startswith("film.dcm") and " suggested " in line]
    assert suggested and [row[1] for row in suggested] == ["A", "B", "C", "D"][: len(suggested)]
    first = suggested[0]  # film.dcm A suggested detector score S at (X, Y), radius R px
    assert first[2:5] == ["suggested", "detector", "score"] and float(first[5]) >= 0.9
    assert abs(float(first[7].strip("(,")) - x) <= 16 and abs(float(first[8].strip("),")) - y) <= 16
    assert first[9:] == ["radius", f"{6.0 / 0.125:.0f}", "px"]
    (why,) = [line for line in lines if line.startswith("far.dcm") and "no suggestions" in line]
    assert why.endswith(
        "no suggestions: the film's pixel spacing 1 mm is outside the 0.05-0.5 mm the detector was trained on"
    )


def test_a_suggestion_is_written_to_a_tenth_of_a_pixel_and_its_score_to_six_places(tmp_path: Path) -> None:
    from edge_app.detect import Candidate
    from edge_app.regions import Region

    analyser = _analyser(tmp_path, RegionsSection(propose="suggest"))
    analysis = analyser.analyse(encode(mammogram(detector_film())), "film.dcm")
    placed = replace(analysis, suggestions=(Candidate(Region("A", 123.456, 78.949, 45.678), 0.12345678),))
    assert _document(placed, analyser)["suggestions"] == [
        {"label": "A", "x": 123.5, "y": 78.9, "radius": 45.7, "score": 0.123457}
    ]


def test_square_pixels_and_the_trained_spacings_are_judged_at_their_edges() -> None:
    """Row and column spacing 1% apart are still one spacing, 2% are not; a film at either end of the trained range
    is in scope."""
    from edge_app.decode import DecodedImage
    from edge_app.detect import DetectorInput
    from edge_app.manifest import DetectorSpec
    from edge_app.proposals import film_spacing, out_of_scope

    def film(row: float, column: float) -> DecodedImage:
        return DecodedImage(np.zeros((4, 4), np.uint8), "DICOM", (row, column), None, None, None)

    assert film_spacing(film(99.0, 100.0)) == 99.5  # exactly 1% of the larger: one spacing
    assert film_spacing(film(0.1, 0.102)) is None
    assert film_spacing(film(0.1, 0.1)) == 0.1
    spec = DetectorSpec(DetectorInput(), 0.05, 0.2)
    assert out_of_scope(film(0.05, 0.05), spec) is None and out_of_scope(film(0.2, 0.2), spec) is None
    assert out_of_scope(film(0.21, 0.21), spec) == (
        "the film's pixel spacing 0.21 mm is outside the 0.05-0.2 mm the detector was trained on"
    )


def test_a_detector_names_its_file_times_itself_in_milliseconds_and_refuses_missing_outputs_in_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edge_app.proposals as proposals_module

    bundle = write_fake_bundle(tmp_path / "bundle", detector=True)
    manifest = load_manifest(bundle)
    detector = FilmDetector.load(bundle, manifest, FAKE_RUNTIME, 1)
    assert detector is not None and detector.name == "detector_float32.tflite"
    ticks = iter([10.0, 10.25, 20.0])  # a start and an end, then the start of a film not looked at
    monkeypatch.setattr(proposals_module, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    proposal = detector.propose(decode_bytes(encode(mammogram(detector_film()))), 4, 0.1)
    assert proposal.detect_ms == 250.0 and proposal.reason is None
    far = decode_bytes(encode(mammogram(detector_film(), PixelSpacing=[1.0, 1.0], ImagerPixelSpacing=[1.0, 1.0])))
    assert detector.propose(far, 4, 0.1).detect_ms == 0.0  # not looked at
    interpreter = detector._interpreter
    assert manifest.detector is not None
    with pytest.raises(BundleError) as missing:
        FilmDetector(manifest.detector, "detector.tflite", {"heat": 0}, interpreter)
    assert str(missing.value) == "detector.tflite lists no 'log_radius' output in the manifest"
    small = replace(manifest.detector, input=replace(manifest.detector.input, stride=8))
    with pytest.raises(BundleError) as wrong:
        FilmDetector(small, "detector.tflite", detector.outputs, interpreter)
    assert str(wrong.value).startswith("detector.tflite output 'heat' is (1, 16, 12, 1), the canvas makes (8, 6) cells")
