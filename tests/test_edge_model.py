"""The device model and the analyse stage on a fake bundle (tests/fakemodel.py): quantisation in and out, calibration,
heatmap fusion, every refusal of a bundle, and per-region answers, with figures worked out by hand."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from dicomfiles import dicom_bytes
from fakemodel import FAKE_RUNTIME, FakeInterpreter, fake_cams, fake_logit, write_fake_bundle

import edge_app.model as model_module
from edge_app.errors import (
    BundleError,
    ModelRefusedError,
    RegionError,
    RuntimeUnavailableError,
    TooManyPixelsError,
    UnsupportedFormatError,
)
from edge_app.gradcam import fuse_heatmaps
from edge_app.manifest import load_manifest, manifest_from_dict, write_manifest
from edge_app.model import EdgeModel, calibrated_probabilities, calibrated_probability, get_output, set_input
from edge_app.regions import Box
from edge_app.runtime import RUNTIMES, installed_runtimes, load_runtime, make_interpreter
from edge_app.scope import ScopeLimits
from edge_app.service.analyse import NEEDS_ROI, Digest, ImageFacts, ModelAnalyser, Sidecar, summary

RUNTIMES_ASKED: list[str] = []


@pytest.fixture(autouse=True)
def fake_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    RUNTIMES_ASKED.clear()
    monkeypatch.setattr(model_module, "load_runtime", lambda name: RUNTIMES_ASKED.append(name) or FAKE_RUNTIME)
    yield


def test_a_model_loads_int8_with_heatmaps_on_two_threads_of_the_auto_runtime_by_default(tmp_path: Path) -> None:
    model = EdgeModel.load(write_fake_bundle(tmp_path / "bundle"))
    assert model.variant == "int8" and model.classifier_name == "classifier_int8.tflite" and RUNTIMES_ASKED == ["auto"]
    assert model._classifier.num_threads == 2 and model._head.num_threads == 2
    EdgeModel.load(tmp_path / "bundle", "float32", "tflite_runtime", 3, heatmaps=False)
    assert RUNTIMES_ASKED == ["auto", "tflite_runtime"]
    direct = EdgeModel(tmp_path / "bundle", load_manifest(tmp_path / "bundle"))
    assert (direct.variant, direct._classifier.num_threads, direct._head is not None) == ("int8", 2, True)
    assert RUNTIMES_ASKED[-1] == "auto"


def _interpreter(spec: dict[str, Any]) -> FakeInterpreter:
    interpreter = FakeInterpreter(json.dumps(spec).encode())
    interpreter.allocate_tensors()
    return interpreter


def test_inputs_are_quantised_with_the_tensors_own_scale_and_zero_point(tmp_path: Path) -> None:
    tensor = {"shape": [1, 5], "dtype": "uint8", "scale": 2.0, "zero_point": 10}
    interpreter = _interpreter({"inputs": [tensor], "outputs": [], "role": "x"})
    set_input(interpreter, np.array([0.0, 1.0, 3.0, 600.0, -50.0]))
    # v / 2 + 10, rounded half to even, clipped to uint8
    assert interpreter.get_tensor(0).tolist() == [[10, 10, 12, 255, 0]]
    signed = {"shape": [1, 3], "dtype": "int8", "scale": 0.5, "zero_point": -3}
    interpreter = _interpreter({"inputs": [signed], "outputs": [], "role": "x"})
    set_input(interpreter, np.array([[1.0, 100.0, -100.0]]))
    assert interpreter.get_tensor(0).tolist() == [[-1, 127, -128]]
    plain = {"shape": [1, 2], "dtype": "float32"}
    interpreter = _interpreter({"inputs": [plain], "outputs": [], "role": "x"})
    set_input(interpreter, np.array([0.25, 300.0], np.float64))
    assert interpreter.get_tensor(0).dtype == np.float32 and interpreter.get_tensor(0).tolist() == [[0.25, 300.0]]


def test_outputs_are_dequantised_and_come_back_as_float32(tmp_path: Path) -> None:
    quantised = {"shape": [1, 3], "dtype": "int8", "scale": 0.0625, "zero_point": 3}
    plain = {"shape": [1, 2], "dtype": "float64"}
    interpreter = _interpreter({"inputs": [], "outputs": [quantised, plain], "role": "x"})
    interpreter.tensors[100] = np.array([[3, 19, -128]], np.int8)
    interpreter.tensors[101] = np.array([[1.5, -2.0]])
    first, second = get_output(interpreter, 0), get_output(interpreter, 1)
    assert first.dtype == np.float32 and first.tolist() == [[0.0, 1.0, -8.1875]]
    assert second.dtype == np.float32 and second.tolist() == [[1.5, -2.0]]


def test_calibration_is_a_stable_tempered_sigmoid() -> None:
    assert calibrated_probability(0.0, 3.0) == 0.5
    assert calibrated_probability(2.0, 2.0) == pytest.approx(1 / (1 + np.exp(-1.0)), abs=1e-15)
    assert calibrated_probability(-2.0, 0.5) == pytest.approx(1 / (1 + np.exp(4.0)), abs=1e-15)
    with np.errstate(all="raise"):  # no overflow or underflow warning for any logit
        extremes = calibrated_probabilities([-1000.0, 1000.0], 1.0)
    assert extremes.tolist() == [0.0, 1.0] and extremes.dtype == np.float64
    assert isinstance(calibrated_probability(1.0, 1.0), float)


def _patch(value: int = 160, size: int = 48, bright: tuple[int, int] | None = (2, 0)) -> np.ndarray:
    """A uniform patch, one third-by-third cell (column, row) brighter, so the heatmap has a place to peak."""
    pixels = np.full((size, size), value, np.uint8)
    if bright is not None:
        third = size // 3
        column, row = bright
        pixels[row * third : (row + 1) * third, column * third : (column + 1) * third] = 250
    return pixels


def test_predict_quantises_calibrates_labels_and_fuses_the_heatmap(tmp_path: Path) -> None:
    bundle = write_fake_bundle(tmp_path / "bundle", temperature=2.0, threshold=0.5)
    pixels = _patch()[..., np.newaxis]
    for variant in ("float32", "int8"):
        prediction = EdgeModel.load(bundle, variant=variant, threads=3).predict(pixels)
        logit = fake_logit(pixels)
        if variant == "int8":  # the output is int8 with scale 1/16 and zero point 3
            logit = (np.rint(logit / 0.0625 + 3) - 3) * 0.0625
        assert prediction.logit == pytest.approx(logit, abs=1e-6)
        assert prediction.probability == pytest.approx(1 / (1 + np.exp(-logit / 2.0)), abs=1e-6)
        assert prediction.label == "malignant" and set(prediction.timings_ms) == {"invoke_ms", "gradcam_ms"}
        expected = fuse_heatmaps(list(fake_cams(pixels[..., 0].astype(np.float64))), 48, (0.0, 0.0))
        assert prediction.heatmap is not None
        np.testing.assert_allclose(prediction.heatmap, expected, atol=1e-6)
    dark = EdgeModel.load(bundle, variant="float32").predict(_patch(100, bright=None)[..., np.newaxis], heatmap=False)
    assert dark.label == "benign" and dark.heatmap is None and set(dark.timings_ms) == {"invoke_ms"}


def test_a_logit_between_quantisation_steps_shows_the_int8_rounding(tmp_path: Path) -> None:
    bundle = write_fake_bundle(tmp_path / "bundle")
    pixels = np.full((48, 48, 1), 131, np.uint8)  # logit 3/32 = 1.5 steps of 1/16: int8 rounds it to 1 step
    assert EdgeModel.load(bundle, variant="float32").predict(pixels).logit == pytest.approx(0.09375)
    assert EdgeModel.load(bundle, variant="int8").predict(pixels).logit == pytest.approx(0.0625)


def test_the_threshold_itself_is_malignant(tmp_path: Path) -> None:
    bundle = write_fake_bundle(tmp_path / "bundle", threshold=0.5)
    assert EdgeModel.load(bundle, variant="float32").predict(np.full((48, 48, 1), 128, np.uint8)).label == "malignant"


def test_the_identity_stamped_into_results(tmp_path: Path) -> None:
    bundle = write_fake_bundle(tmp_path / "bundle", threshold=0.375)
    model = EdgeModel.load(bundle, variant="int8", heatmaps=False)
    identity = model.identity
    entry = load_manifest(bundle).files["classifier_int8.tflite"]
    assert (identity.name, identity.version, identity.architecture, identity.variant) == (
        "fake-model",
        "7",
        "hybrid",
        "int8",
    )
    assert (identity.file, identity.sha256, identity.runtime) == ("classifier_int8.tflite", entry.sha256, "fake 1.0")
    assert (identity.threshold, identity.target_sensitivity) == (0.375, 0.9)
    assert set(identity.stamp()) == {"name", "version", "architecture", "variant", "file", "sha256", "runtime"}
    assert model.predict(np.full((48, 48, 1), 200, np.uint8)).heatmap is None  # no head was loaded


def _edit(bundle: Path, change: Any) -> Path:
    values = json.loads((bundle / "manifest.json").read_text())
    change(values)
    (bundle / "manifest.json").write_text(json.dumps(values))
    return bundle


def _refusal(bundle: Path, variant: str = "int8", **options: Any) -> str:
    with pytest.raises(BundleError) as caught:
        EdgeModel.load(bundle, variant=variant, **options)
    return str(caught.value)


def test_a_runtime_verified_to_fail_is_refused_by_its_name_only(tmp_path: Path) -> None:
    def mark(values: dict[str, Any]) -> None:
        values["files"]["classifier_int8.tflite"]["runtimes"] = {"other 1.0": "crashes", "fake 0.9": "op X missing"}
        values["files"]["gradcam_head.tflite"]["runtimes"] = {"fake 1.0": "ok"}

    bundle = _edit(write_fake_bundle(tmp_path / "b"), mark)
    assert _refusal(bundle) == "classifier_int8.tflite was verified not to run under fake 0.9: op X missing"
    assert EdgeModel.load(bundle, variant="float32").variant == "float32"

    def mark_head(values: dict[str, Any]) -> None:
        values["files"]["gradcam_head.tflite"]["runtimes"] = {"fake 1.0": "no kernel"}

    head = _edit(write_fake_bundle(tmp_path / "h"), mark_head)
    assert _refusal(head) == "gradcam_head.tflite was verified not to run under fake 1.0: no kernel"
    assert EdgeModel.load(head, variant="int8", heatmaps=False).variant == "int8"  # the head is not loaded


def test_inputs_that_disagree_with_the_manifest_are_refused(tmp_path: Path) -> None:
    resized = _edit(write_fake_bundle(tmp_path / "a"), lambda v: v["preprocess"].update(input_size=64))
    assert _refusal(resized) == (
        "classifier_int8.tflite takes input (1, 48, 48, 1) but the manifest's preprocessing makes (1, 64, 64, 1)"
    )

    def retype(values: dict[str, Any]) -> None:
        values["files"]["classifier_int8.tflite"]["input"]["dtype"] = "float32"

    assert _refusal(_edit(write_fake_bundle(tmp_path / "b"), retype)) == (
        "classifier_int8.tflite input is (1, 48, 48, 1) uint8, manifest says (1, 48, 48, 1) float32"
    )

    def reshape_head(values: dict[str, Any]) -> None:
        values["files"]["gradcam_head.tflite"]["input"]["shape"] = [1, 4, 4, 2]

    assert _refusal(_edit(write_fake_bundle(tmp_path / "c"), reshape_head)) == (
        "gradcam_head.tflite input is (1, 3, 3, 2) float32, manifest says (1, 4, 4, 2) float32"
    )


def test_a_model_the_runtime_cannot_build_names_the_file_and_the_first_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.tflite"
    path.write_text(json.dumps({"refuse": "Didn't find op for builtin opcode 'X'"}))
    with pytest.raises(ModelRefusedError) as caught:
        make_interpreter(FAKE_RUNTIME, path, threads=2)
    assert str(caught.value) == "fake 1.0 cannot run broken.tflite: Didn't find op for builtin opcode 'X'"
    path.write_text(json.dumps({"refuse": ""}))
    with pytest.raises(ModelRefusedError) as caught:
        make_interpreter(FAKE_RUNTIME, path, threads=2)
    assert str(caught.value) == "fake 1.0 cannot run broken.tflite: RuntimeError"  # a blank message: the error's name
    interpreter = make_interpreter(FAKE_RUNTIME, _valid(tmp_path), threads=3)
    assert interpreter.allocated and interpreter.num_threads == 3
    with pytest.raises(ModelRefusedError) as caught:
        make_interpreter(FAKE_RUNTIME, tmp_path / "gone.tflite", threads=2)
    assert str(caught.value) == "fake 1.0 cannot run gone.tflite: No such file or directory"  # the system's words


def _valid(tmp_path: Path) -> Path:
    path = tmp_path / "valid.tflite"
    path.write_text(json.dumps({"inputs": [], "outputs": [], "role": "x"}))
    return path


def test_runtimes_are_found_by_name_and_in_auto_order(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeUnavailableError, match=r"^unknown runtime 'onnx'; choose auto, ai_edge_litert, "):
        load_runtime("onnx")
    import importlib

    def missing(name: str) -> Any:
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(importlib, "import_module", missing)
    with pytest.raises(RuntimeUnavailableError) as caught:
        load_runtime("auto")
    message = str(caught.value)
    assert message.startswith("no TFLite runtime could be imported (ai_edge_litert: No module named")
    assert "; tflite_runtime: No module named 'tflite_runtime.interpreter')" in message
    assert message.endswith("install ai-edge-litert (pip install 'mammo-edge[edge]') or tflite-runtime")
    assert installed_runtimes() == []


def test_the_first_installed_runtime_is_auto() -> None:
    found = installed_runtimes()
    if not found:
        pytest.skip("no TFLite runtime in this venv")
    assert load_runtime("auto") == found[0] and found[0].label == f"{found[0].name} {found[0].version}"
    import importlib
    from importlib import metadata

    first = load_runtime()  # auto is the default
    module, distribution = RUNTIMES[first.name]
    assert first.name == found[0].name and first.version == metadata.version(distribution)
    assert first.interpreter_class is importlib.import_module(module).Interpreter


def test_a_runtime_asked_for_by_name_is_that_one_or_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked for by name, a runtime that cannot be imported is refused; auto's first choice does not stand in."""
    import importlib

    real = importlib.import_module

    def without_tflite_runtime(name: str) -> Any:
        if name.startswith("tflite_runtime"):
            raise ImportError(f"No module named {name!r}")
        return real(name)

    monkeypatch.setattr(importlib, "import_module", without_tflite_runtime)
    with pytest.raises(RuntimeUnavailableError, match=r"^no TFLite runtime could be imported \(tflite_runtime: No "):
        load_runtime("tflite_runtime")


# --- the manifest ---


def test_every_file_is_checked_for_presence_size_and_sha256(tmp_path: Path) -> None:
    bundle = write_fake_bundle(tmp_path / "b")
    assert load_manifest(bundle).variants == ["int8", "float32"]
    head = bundle / "gradcam_head.tflite"
    original = head.read_bytes()
    head.write_bytes(original[:-1])
    with pytest.raises(BundleError, match=r"^bundle file gradcam_head.tflite is \d+ bytes, the manifest says \d+ "):
        load_manifest(bundle)
    head.write_bytes(original[:-1] + b"X")  # the same size, other content
    with pytest.raises(BundleError, match=r"^bundle file gradcam_head.tflite does not match its sha256"):
        load_manifest(bundle)
    assert load_manifest(bundle, verify_files=False).name == "fake-model"  # what `mammo-edge status` reads
    head.unlink()
    with pytest.raises(BundleError, match=r"^bundle file gradcam_head.tflite listed in the manifest is missing$"):
        load_manifest(bundle)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda v: v.update(schema_version=7),
            r"schema version 7 is not supported \(this device reads 1, 2, 3, 4, 5, 6\)",
        ),
        (lambda v: v.update(labels=["normal", "cancer"]), r"labels \['normal', 'cancer'\] are not \['benign', 'mal"),
        (lambda v: v.update(centre_offsets=[0.0]), r"^manifest backbones and centre_offsets differ in length$"),
        (lambda v: v.update(files={}), r"^manifest files must be a non-empty object$"),
        (lambda v: v["preprocess"].update(input_size=-1), r"^manifest preprocess is invalid: "),
        (lambda v: v.update(scope={"patch_side_px": [9, 3]}), r"scope patch_side_px must be 0 < min <= max"),
        (lambda v: v["files"]["gradcam_head.tflite"].update(extra=1), r"files\['gradcam_head.tflite'\]: unknown"),
    ],
)
def test_a_bad_manifest_names_its_problem(tmp_path: Path, change: Any, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        load_manifest(_edit(write_fake_bundle(tmp_path / "b"), change))


def test_what_is_not_a_manifest(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"is not a model bundle: manifest.json not found$"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match=r"manifest.json is not valid JSON: "):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(BundleError, match=r"^manifest.json must hold a JSON object$"):
        load_manifest(tmp_path)


def test_older_schemas_read_with_the_default_scope_and_round_trip(tmp_path: Path) -> None:
    bundle = write_fake_bundle(tmp_path / "b")
    manifest = load_manifest(bundle)
    assert manifest.scope.crop_rule.scale == 4.0 and manifest.scope.patch_side_px == (48, 48)
    values = json.loads((bundle / "manifest.json").read_text())
    del values["scope"]
    old = manifest_from_dict({**values, "schema_version": 2})
    assert old.scope.patch_side_px == (64, 512) and old.scope.crop_rule.scale == 2.0
    assert old.centre_offsets == tuple(float(offset) for offset in values["centre_offsets"])  # typed, not a list
    write_manifest(tmp_path / "b", manifest)
    assert load_manifest(bundle) == manifest


def test_a_missing_variant_says_why_and_what_there_is(tmp_path: Path) -> None:
    bundle = write_fake_bundle(tmp_path / "b", variants=("float32",), rejected={"int8": ["agreement 0.9 < 0.98"]})
    assert _refusal(bundle, "int8") == (
        "the bundle has no int8 classifier: the fidelity gate rejected it (agreement 0.9 < 0.98); it has float32: "
        "choose one of them ([model] variant, or --variant)"
    )
    assert _refusal(bundle, "float16").startswith("the bundle has no float16 classifier; it has float32: ")

    def drop_head(values: dict[str, Any]) -> None:
        del values["files"]["gradcam_head.tflite"]

    headless = _edit(write_fake_bundle(tmp_path / "c"), drop_head)
    assert _refusal(headless, "int8") == "the bundle has no gradcam_head model"
    assert EdgeModel.load(headless, variant="int8", heatmaps=False).predict(_patch()[..., None]).heatmap is None


# --- the analyse stage over the fake model ---


def _analyser(tmp_path: Path, max_pixels: int = 10**7, **limits: Any) -> ModelAnalyser:
    bundle = write_fake_bundle(tmp_path / "bundle", crop_scale=4.0, patch_side_px=(48, 48))
    model = EdgeModel.load(bundle, variant="float32")
    return ModelAnalyser(model, max_pixels, ScopeLimits.resolve(model.manifest.scope, **limits))


def _film(height: int, width: int) -> np.ndarray:
    """A dim film with a faint gradient (a constant image is refused as empty)."""
    return (np.add.outer(np.arange(height), np.arange(width)) % 20 + 80).astype(np.uint8)


def _png(pixels: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", pixels)
    assert ok
    return encoded.tobytes()


def test_a_patch_is_classified_whole_and_its_overlay_is_the_patch(tmp_path: Path) -> None:
    analyser = _analyser(tmp_path)
    pixels = _patch(160, size=60, bright=(0, 2))  # 60 px: in scope (24..96), padded to a square of its own
    analysis = analyser.analyse(_png(pixels), "patch.png")
    assert analysis.status == "classified" and analysis.reason is None
    (answer,) = analysis.regions
    assert (answer.label, answer.marked_as) == ("A", "whole image")
    assert answer.box == answer.crop == Box(0, 0, 60, 60)
    expected = analyser.model.predict(cv2.resize(pixels, (48, 48), interpolation=cv2.INTER_AREA)[..., None])
    assert answer.probability == pytest.approx(expected.probability) and answer.decision == expected.label
    assert answer.heatmap_peak is not None and answer.heatmap_peak[0] < 20 and answer.heatmap_peak[1] >= 40
    assert analysis.image.width == 60 and analysis.image.height == 60 and analysis.image.format == "PNG"
    overlay = cv2.imdecode(np.frombuffer(analysis.overlay_jpeg or b"", np.uint8), cv2.IMREAD_COLOR)
    assert overlay is not None and overlay.shape[2] == 3
    assert {"decode_ms", "preprocess_ms", "invoke_ms", "gradcam_ms", "overlay_ms"} <= set(analysis.timings_ms)
    assert analysis.label == answer.decision and analysis.probability == answer.probability
    assert summary(analysis) == f"A {answer.decision} p={answer.probability:.3f}"


@pytest.mark.parametrize("size", [Digest.BESIDE_FROM_BYTES - 1, Digest.BESIDE_FROM_BYTES])
def test_a_scans_digest_is_its_sha256_hashed_beside_decoding_from_a_megabyte(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    digest = Digest(data)
    assert (digest._thread is not None) == (size >= Digest.BESIDE_FROM_BYTES)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest() == digest.hexdigest()
    assert digest._thread is None or not digest._thread.is_alive()


def test_a_large_scan_refused_at_decoding_leaves_no_hashing_thread(tmp_path: Path) -> None:
    analyser = _analyser(tmp_path)
    with pytest.raises(UnsupportedFormatError):
        analyser.analyse(b"not an image " * (Digest.BESIDE_FROM_BYTES // 8), "big.png")
    assert not any(thread.name == "scan-digest" for thread in threading.enumerate())


def test_a_large_scan_whose_regions_are_refused_leaves_no_hashing_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan to classify waits for its digest after the invoke; one refused before it (here its sidecar) still
    waits for it, so no hashing thread outlives the refusal (the hashing is slowed to outlast the refusal)."""
    hash_now = Digest._hash

    def slow_hash(digest: Digest, data: bytes) -> None:
        time.sleep(0.2)
        hash_now(digest, data)

    monkeypatch.setattr(Digest, "_hash", slow_hash)
    analyser = _analyser(tmp_path)
    noise = np.random.default_rng(0).integers(0, 256, (1100, 1100), dtype=np.uint8)
    film = _png(noise)
    assert len(film) >= Digest.BESIDE_FROM_BYTES  # hashed on its own thread
    outside = json.dumps({"regions": [{"label": "A", "x": 5000, "y": 5000, "radius": 30}]}).encode()
    with pytest.raises(RegionError):
        analyser.analyse(film, "big.png", Sidecar("big.roi.json", "roi", outside))
    assert not any(thread.name == "scan-digest" for thread in threading.enumerate())


def test_a_film_without_regions_needs_them_and_nothing_is_classified(tmp_path: Path) -> None:
    analyser = _analyser(tmp_path)
    film = _film(300, 400)
    analysis = analyser.analyse(_png(film), "film.png")
    assert analysis.status == NEEDS_ROI and analysis.regions == () and analysis.overlay_jpeg is None
    assert analysis.reason is not None and analysis.reason.startswith(
        "the image is 400x300 px, larger than the mass patches this model was trained on (24..96 px a side)"
    )
    assert "drop film.roi.json" in analysis.reason
    assert analysis.label is None and analysis.probability is None
    assert summary(analysis) == "needs_roi (400x300 px, no regions)"
    small = analyser.analyse(_png(_film(20, 30)), "tiny.png")
    assert small.status == NEEDS_ROI and "smaller than" in (small.reason or "")


def test_each_marked_region_is_cut_by_the_bundles_rule_and_answered(tmp_path: Path) -> None:
    analyser = _analyser(tmp_path)
    film = _film(300, 400)
    film[40:80, 300:340] = 240  # a bright mass under region B
    roi = {"regions": [{"label": "A", "x": 100, "y": 150, "radius": 10}, {"label": "B", "box": [300, 40, 340, 80]}]}
    sidecar = Sidecar("film.roi.json", "roi", json.dumps(roi).encode())
    analysis = analyser.analyse(_png(film), "film.png", sidecar)
    assert analysis.status == "classified"
    first, second = analysis.regions
    assert (first.label, first.marked_as, second.label, second.marked_as) == ("A", "circle", "B", "box")
    assert first.box == Box(90, 140, 110, 160) and first.crop == Box(80, 130, 120, 170)  # side max(16, 4 * 10)
    assert second.box == Box(300, 40, 340, 80) and second.crop == Box(280, 20, 360, 100)  # side 4 * 20
    assert first.probability < second.probability and analysis.most_suspicious == second
    assert analysis.probability == second.probability and analysis.label == second.decision
    assert second.heatmap_peak is not None
    assert 300 <= second.heatmap_peak[0] < 340 and 40 <= second.heatmap_peak[1] < 80  # inside the mass
    assert summary(analysis) == (
        f"A {first.decision} p={first.probability:.3f}, B {second.decision} p={second.probability:.3f}"
    )
    overlay = cv2.imdecode(np.frombuffer(analysis.overlay_jpeg or b"", np.uint8), cv2.IMREAD_COLOR)
    assert overlay is not None and overlay.shape[1] >= 400


def test_a_mask_sidecar_marks_its_components(tmp_path: Path) -> None:
    analyser = _analyser(tmp_path)
    film = _film(200, 200)
    mask = np.zeros((200, 200), np.uint8)
    mask[20:40, 30:50] = 255
    analysis = analyser.analyse(_png(film), "film.png", Sidecar("film.mask.png", "mask", _png(mask)))
    (answer,) = analysis.regions
    assert answer.marked_as == "mask" and answer.box == Box(30, 20, 50, 40)


def test_too_many_pixels_says_which_setting_to_raise(tmp_path: Path) -> None:
    analyser = _analyser(tmp_path, max_pixels=1000)
    with pytest.raises(TooManyPixelsError, match=r"; raise \[ingest\] max_pixels in the device config if such scans"):
        analyser.analyse(_png(_film(40, 40)), "big.png")


def test_probe_runs_each_file_once_under_each_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edge_app.probe as probe_module

    monkeypatch.setattr(probe_module, "installed_runtimes", lambda: [FAKE_RUNTIME])
    bundle = write_fake_bundle(tmp_path / "bundle")
    refused = tmp_path / "refused.tflite"
    refused.write_text(json.dumps({"refuse": "unsupported op"}))
    failing = tmp_path / "failing.tflite"
    failing.write_text(json.dumps({"inputs": [], "outputs": [], "fail_invoke": "tensor data is null"}))
    files = [bundle / "classifier_int8.tflite", bundle / "gradcam_head.tflite", refused, failing]
    assert probe_module.probe(files) == {
        "classifier_int8.tflite": {"fake 1.0": "ok"},
        "gradcam_head.tflite": {"fake 1.0": "ok"},
        "refused.tflite": {"fake 1.0": "unsupported op"},
        "failing.tflite": {"fake 1.0": "tensor data is null"},
    }


def test_probe_main_prints_json_for_the_files_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import edge_app.probe as probe_module

    monkeypatch.setattr(probe_module, "installed_runtimes", lambda: [FAKE_RUNTIME])
    refused = tmp_path / "refused.tflite"
    refused.write_text(json.dumps({"refuse": "bad"}))
    silent = tmp_path / "silent.tflite"
    silent.write_text(json.dumps({"inputs": [], "outputs": [], "fail_invoke": ""}))
    assert probe_module.main([str(refused), str(silent)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "refused.tflite": {"fake 1.0": "bad"},
        "silent.tflite": {"fake 1.0": "RuntimeError"},  # a message-less error is named by its class
    }


def test_installed_runtimes_skips_the_missing_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    import edge_app.runtime as runtime_module

    def only_tflite(name: str) -> Any:
        if name == "ai_edge_litert":
            raise RuntimeUnavailableError("not here")
        return FAKE_RUNTIME if name == "tflite_runtime" else None

    monkeypatch.setattr(runtime_module, "load_runtime", only_tflite)
    assert installed_runtimes() == [FAKE_RUNTIME]


def test_a_written_manifest_is_indented_for_people(tmp_path: Path) -> None:
    bundle = write_fake_bundle(tmp_path / "b")
    path = write_manifest(bundle, load_manifest(bundle))
    assert path.read_text().startswith('{\n  "schema_version": 4,\n') and path.read_text().endswith("}\n")


class _OpsInterpreter:
    """The two calls `edge_app.macs` makes of an interpreter, over a hand-written graph."""

    def __init__(self, tensors: dict[int, tuple[str, tuple[int, ...]]], ops: list[tuple[str, list[int], list[int]]]):
        self.tensors, self.ops = tensors, ops

    def get_tensor_details(self) -> list[dict[str, Any]]:
        return [
            {"index": index, "name": name, "shape": np.array(shape)} for index, (name, shape) in self.tensors.items()
        ]

    def _get_ops_details(self) -> list[dict[str, Any]]:
        return [{"op_name": name, "inputs": inputs, "outputs": outputs} for name, inputs, outputs in self.ops]


def test_macs_are_counted_per_op_from_the_graph() -> None:
    from edge_app.macs import count_macs, macs_per_op

    tensors = {
        0: ("image", (1, 8, 8, 2)),
        1: ("conv/w", (4, 3, 3, 2)),
        2: ("conv", (1, 8, 8, 4)),
        3: ("dw/w", (1, 3, 5, 4)),
        4: ("dw", (1, 8, 8, 4)),
        5: ("fc/w", (3, 256)),
        6: ("fc", (1, 3)),
        7: ("up/w", (2, 2, 2, 4)),
        8: ("up", (1, 16, 16, 2)),
        9: ("bmm", (1, 5, 7)),
        10: ("a", (1, 5, 6)),
        11: ("sum", (1, 8, 8, 4)),
        12: ("scalar", ()),
        13: ("b", (1, 6, 7)),
    }
    ops = [  # what is skipped comes first: the ops after it are still counted
        ("CONV_2D", [0, 1], []),  # no output: skipped
        ("CONV_2D", [0, 1], [99]),  # an output the graph does not list: skipped
        ("CONV_2D", [0, 1], [2]),  # 8*8*4 outputs x 3*3*2
        ("ADD", [2, 2], [11]),  # not counted
        ("DEPTHWISE_CONV_2D", [2, 3], [4]),  # 8*8*4 outputs x 3*5
        ("FULLY_CONNECTED", [4, 5], [6]),  # 3 outputs x 256
        ("TRANSPOSE_CONV", [4, 7], [8]),  # 16*16*2 outputs x 2*2*4
        ("BATCH_MATMUL", [10, 13], [9]),  # 5*7 outputs x 6, the first input's last axis
        ("MEAN", [0], [12]),
    ]
    interpreter = _OpsInterpreter(tensors, ops)
    assert macs_per_op(interpreter) == {
        "conv": 256 * 18,
        "dw": 256 * 15,
        "fc": 3 * 256,
        "up": 512 * 16,
        "bmm": 35 * 6,
    }
    assert count_macs(interpreter) == 256 * 18 + 256 * 15 + 3 * 256 + 512 * 16 + 35 * 6


class _TickingClock:
    """perf_counter for the analyse stage: every reading is one millisecond after the last."""

    def __init__(self) -> None:
        self.readings = 0

    def perf_counter(self) -> float:
        self.readings += 1
        return self.readings / 1000


class _PinnedModel:
    """Answers every region with one given heatmap and probability (the bundle's manifest and identity otherwise)."""

    def __init__(self, bundle: Path, heatmap: np.ndarray | None, probability: float = 0.75) -> None:
        real = EdgeModel.load(bundle, variant="float32", heatmaps=False)
        self.manifest, self.identity = real.manifest, real.identity
        self.heatmap, self.probability = heatmap, probability
        self.inputs: list[np.ndarray] = []

    def predict(self, pixels: np.ndarray, heatmap: bool = True) -> Any:
        from edge_app.model import Prediction

        self.inputs.append(pixels)
        return Prediction(0.5, self.probability, "malignant", self.heatmap, {"invoke_ms": 4.0})

    def predict_batch(self, images: list[np.ndarray], heatmap: bool = True) -> list[Any]:
        return [self.predict(pixels, heatmap) for pixels in images]

    def explain(self, prediction: Any) -> Any:
        return prediction  # pinned: its heatmap comes with the prediction


def test_the_analysis_records_the_scan_its_regions_and_each_stages_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edge_app.service.analyse as analyse_module

    heat = np.zeros((48, 48), np.float32)
    heat[30, 10] = 1.0  # the peak: column 10, row 30 of the model input
    model = _PinnedModel(write_fake_bundle(tmp_path / "bundle"), heat)
    clock = _TickingClock()
    monkeypatch.setattr(analyse_module, "time", clock)
    drawn: list[Any] = []
    monkeypatch.setattr(analyse_module, "render", lambda gray, views, **_: drawn.append((gray, views)) or gray)
    analyser = ModelAnalyser(model, 10**7, ScopeLimits.resolve(model.manifest.scope))  # type: ignore[arg-type]

    film = _film(300, 400)
    data = dicom_bytes(film, PixelSpacing=[0.1, 0.2], ImageLaterality="R", ViewPosition="MLO")
    roi = {"regions": [{"label": "A", "x": 200, "y": 295, "radius": 10}, {"label": "B", "box": [10, 20, 40, 30]}]}
    analysis = analyser.analyse(data, "film.dcm", Sidecar("film.roi.json", "roi", json.dumps(roi).encode()))
    assert analysis.sha256 == hashlib.sha256(data).hexdigest()
    assert analysis.image == ImageFacts("DICOM", 400, 300, (80.0, 30.0), "R", "MLO")
    # one reading before and after decoding, around the regions' preprocessing; the model's own time added
    assert analysis.timings_ms == pytest.approx({"decode_ms": 1.0, "preprocess_ms": 1.0, "invoke_ms": 8.0})
    assert not drawn  # the overlay is drawn when it is first asked for (the daemon's write lane asks)
    assert analysis.overlay_jpeg is not None and len(drawn) == 1
    assert analysis.timings_ms["overlay_ms"] == pytest.approx(2.0)  # ... its drawing and encoding join the analysis's
    assert analysis.overlay_jpeg is not None and len(drawn) == 1  # once
    assert analysis.timings_ms["overlay_ms"] == pytest.approx(2.0)
    circle, box = analysis.regions
    assert circle.box == Box(190, 285, 210, 300)  # clipped at the film's bottom edge
    assert circle.crop == Box(180, 275, 220, 315) and box.crop == Box(-5, -5, 55, 55)  # 4 x radius, 4 x 15
    # the input's column 10, row 30 of 48, back in film pixels through each region's square
    assert circle.heatmap_peak == (180 + round(10.5 * 40 / 48 - 0.5), 275 + round(30.5 * 40 / 48 - 0.5))
    assert box.heatmap_peak == (-5 + round(10.5 * 60 / 48 - 0.5), -5 + round(30.5 * 60 / 48 - 0.5))
    ((gray, views),) = drawn
    assert gray.shape == (300, 400)
    assert [view.label for view in views] == ["A", "B"]
    assert [view.caption for view in views] == ["A  p=0.750  malignant", "B  p=0.750  malignant"]
    assert views[0].circle == (200.0, 295.0, 10.0) and views[1].circle is None
    assert [view.window for view in views] == [circle.crop, box.crop] and views[0].outline == circle.box
    assert views[0].crop.shape == (40, 40) and views[0].heatmap is heat


def test_a_wide_patch_is_seen_as_its_padded_square(tmp_path: Path) -> None:
    heat = np.zeros((48, 48), np.float32)
    heat[30, 10] = 1.0
    model = _PinnedModel(write_fake_bundle(tmp_path / "bundle"), heat)
    analyser = ModelAnalyser(model, 10**7, ScopeLimits.resolve(model.manifest.scope))  # type: ignore[arg-type]
    analysis = analyser.analyse(_png(_film(40, 60)), "wide.png")  # padded to 60 x 60, 10 rows above and below
    (answer,) = analysis.regions
    assert answer.box == answer.crop == Box(0, 0, 60, 40)
    assert answer.heatmap_peak == (round(10.5 * 60 / 48 - 0.5), -10 + round(30.5 * 60 / 48 - 0.5))
    assert model.inputs[0].shape == (48, 48, 1)


def test_without_a_heatmap_there_is_no_overlay(tmp_path: Path) -> None:
    model = _PinnedModel(write_fake_bundle(tmp_path / "bundle"), None)
    analyser = ModelAnalyser(model, 10**7, ScopeLimits.resolve(model.manifest.scope))  # type: ignore[arg-type]
    analysis = analyser.analyse(_png(_film(48, 48)), "p.png")
    assert analysis.overlay_jpeg is None and analysis.regions[0].heatmap_peak is None
    assert "overlay_ms" not in analysis.timings_ms


def test_a_tall_odd_patch_and_a_film_keep_their_geometry_and_hash(tmp_path: Path) -> None:
    heat = np.zeros((48, 48), np.float32)
    heat[30, 10] = 1.0
    model = _PinnedModel(write_fake_bundle(tmp_path / "bundle"), heat)
    analyser = ModelAnalyser(model, 10**7, ScopeLimits.resolve(model.manifest.scope))  # type: ignore[arg-type]
    tall = analyser.analyse(_png(_film(60, 41)), "tall.png")  # padded to 60 x 60: 9 columns left, 10 right
    assert tall.regions[0].heatmap_peak == (-9 + round(10.5 * 60 / 48 - 0.5), round(30.5 * 60 / 48 - 0.5))
    film = _png(_film(300, 400))
    needs = analyser.analyse(film, "film.png")
    assert needs.status == NEEDS_ROI and needs.sha256 == hashlib.sha256(film).hexdigest()


def test_disk_changes_checks_every_loaded_file_by_content_and_rehashes_a_touched_one_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A touched classifier with the same bytes is no change (and is not hashed again at the next call); the head,
    checked after it, changed in place at the same size: reported by its sha256."""
    model = EdgeModel.load(write_fake_bundle(tmp_path / "bundle"))
    head_name = model.manifest.gradcam_head()[0]
    classifier, head = model.bundle / model.classifier_name, model.bundle / head_name
    assert model.disk_changes() is None
    os.utime(classifier, ns=(1, 1))  # same content, new time: verified again, then remembered
    verified: list[str] = []
    real_verify = model_module.verify_file

    def verify(bundle: Path, name: str, *rest: Any) -> None:
        verified.append(name)
        real_verify(bundle, name, *rest)

    monkeypatch.setattr(model_module, "verify_file", verify)
    assert model.disk_changes() is None and verified == [model.classifier_name]
    assert model.disk_changes() is None and verified == [model.classifier_name], "an unchanged file was hashed again"
    changed = bytearray(head.read_bytes())
    changed[-1] ^= 0xFF
    head.write_bytes(bytes(changed))
    problem = model.disk_changes()
    assert problem is not None and head_name in problem and "sha256" in problem


def test_the_probe_command_reads_its_files_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """How the converter runs it, in a process of its own: ``python -m edge_app.probe FILE...``; each file is tried
    under every runtime installed."""
    from edge_app.probe import main as probe_main

    for name in ("a.tflite", "b.tflite"):
        (tmp_path / name).write_bytes(b"not a flatbuffer" * 8)
    monkeypatch.setattr(sys, "argv", ["probe", str(tmp_path / "a.tflite"), str(tmp_path / "b.tflite")])
    assert probe_main() == 0
    printed = json.loads(capsys.readouterr().out)
    assert sorted(printed) == ["a.tflite", "b.tflite"] and all(printed.values()), printed


def test_a_files_input_with_an_unknown_key_is_refused_by_its_place(tmp_path: Path) -> None:
    values = json.loads((write_fake_bundle(tmp_path / "b") / "manifest.json").read_text())
    values["files"]["classifier_float32.tflite"]["input"]["colour"] = "rgb"
    where = r"^manifest files\['classifier_float32.tflite'\].input: "
    with pytest.raises(BundleError, match=where + r"unknown key\(s\) 'colour'"):
        manifest_from_dict(values)


def test_an_analysis_explained_later_is_the_one_explained_at_once(tmp_path: Path) -> None:
    """The daemon's loop leaves the Grad-CAM heatmaps and the overlay to its overlay lane (`explain_later`): the loop
    gets the answers alone; `completed` then gives exactly what the analysis explained at once gives."""
    now = _analyser(tmp_path)
    later = ModelAnalyser(now.model, now.max_pixels, now.limits, explain_later=True)
    pixels = _film(300, 400)
    pixels[40:80, 300:340] = 240  # a bright mass under region B
    film = _png(pixels)
    roi = {"regions": [{"label": "A", "x": 100, "y": 150, "radius": 10}, {"label": "B", "box": [300, 40, 340, 80]}]}
    sidecar = Sidecar("film.roi.json", "roi", json.dumps(roi).encode())
    at_once = now.analyse(film, "film.png", sidecar)
    pending = later.analyse(film, "film.png", sidecar)
    assert pending.pending is not None and pending.overlay is None
    assert [answer.heatmap_peak for answer in pending.regions] == [None, None]  # the peaks come with the explanation
    assert (pending.status, pending.label, pending.probability) == (at_once.status, at_once.label, at_once.probability)
    explained = pending.completed()
    assert explained.pending is None and explained.completed() is explained
    assert explained.regions == at_once.regions and at_once.regions[1].heatmap_peak is not None
    assert explained.overlay is not None and at_once.overlay is not None
    assert np.array_equal(explained.overlay.pixels(), at_once.overlay.pixels())
    assert "gradcam_ms" in explained.timings_ms
