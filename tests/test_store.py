"""`mammo-edge model install | rollback | list` and the bundle self-test: a bad bundle never reaches the link, and
the version that served goes on serving. The fake runtime answers like a model, so every check runs for real."""

from __future__ import annotations

import json
import os
import platform
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from fakemodel import FAKE_RUNTIME, write_fake_bundle

import edge_app.model as model_module
from edge_app import selftest as selftest_module
from edge_app.cli import main
from edge_app.errors import EXIT_OK, EXIT_REFUSED, BundleError
from edge_app.fsutil import sha256_of
from edge_app.manifest import load_manifest
from edge_app.model import EdgeModel
from edge_app.selftest import (
    MAX_DRIFT,
    SelfTestReport,
    SelfTestSample,
    check_selftest,
    read_selftest,
    run_selftest,
    sample_scan,
    write_selftest,
)
from edge_app.store import ModelStore


@pytest.fixture(autouse=True)
def fake_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(model_module, "load_runtime", lambda name: FAKE_RUNTIME)
    yield


def _store(root: Path) -> ModelStore:
    return ModelStore(root / "bundle", "int8", "auto", 1)


def _tree(root: Path) -> dict[str, str]:
    """Every path under `root` with its link target or content hash: what a refused install must leave alone."""
    tree = {}
    for path in sorted(root.rglob("*")):
        tree[str(path.relative_to(root))] = (
            os.readlink(path) if path.is_symlink() else sha256_of(path) if path.is_file() else ""
        )
    return tree


def _rewrite_selftest(bundle: Path, change: str) -> Path:
    """Replace the sample's recorded int8 answers and re-sign the manifest: every hash holds, the answers do not."""
    manifest = load_manifest(bundle)
    sample = read_selftest(bundle, manifest)
    answers = dict(sample.answers)
    answers["int8"] = 1.0 - answers["int8"] if change == "flipped" else answers["int8"] + MAX_DRIFT / 2
    entry = write_selftest(bundle, type(sample)(sample.images, sample.keras, answers))
    values = json.loads((bundle / "manifest.json").read_text())
    values["selftest"] = {"file": entry.file, "sha256": entry.sha256, "size_bytes": entry.size_bytes, "images": 8}
    (bundle / "manifest.json").write_text(json.dumps(values))
    return bundle


def test_the_selftest_reproduces_the_conversions_answers(tmp_path: Path) -> None:
    report = run_selftest(EdgeModel.load(write_fake_bundle(tmp_path / "b"), "int8", heatmaps=False), limit=None)
    assert report.images == 8 and report.failures == []
    assert report.max_abs_prob_diff_reference == 0.0 and report.agreement_reference == 1.0
    assert 0 < report.max_abs_prob_diff_keras < 0.05  # int8 rounds its logit: close to float, not equal
    probabilities = np.array(report.probabilities)
    assert (probabilities < 0.5).any() and (probabilities >= 0.5).any()  # the sample spans both answers
    drifted = _rewrite_selftest(write_fake_bundle(tmp_path / "d"), "within")
    assert run_selftest(EdgeModel.load(drifted, "int8", heatmaps=False)).failures == []  # within MAX_DRIFT passes


def test_install_links_the_version_and_a_second_install_keeps_the_first_as_previous(tmp_path: Path) -> None:
    store = _store(tmp_path / "device")
    given = write_fake_bundle(tmp_path / "v7", version="7")
    given.chmod(0o700)  # as a converter's staging folder leaves it
    (given / "manifest.json").chmod(0o600)
    first = store.install(given)
    installed = tmp_path / "device" / "models" / "7"
    assert installed.stat().st_mode & 0o777 == 0o755 and (installed / "manifest.json").stat().st_mode & 0o777 == 0o644
    assert (first.live, first.previous) == ("7", None) and first.selftest.images == 8
    assert os.readlink(tmp_path / "device" / "bundle") == "models/7"  # relative: valid in a staging root too
    assert EdgeModel.load(tmp_path / "device" / "bundle", "int8").identity.version == "7"
    second = store.install(write_fake_bundle(tmp_path / "v8", version="8"))
    assert (second.live, second.previous) == ("8", "7")
    assert [(v.version, v.live, v.previous) for v in store.versions()] == [("7", False, True), ("8", True, False)]
    back = store.rollback()
    assert (back.live, back.previous) == ("7", "8")
    assert EdgeModel.load(tmp_path / "device" / "bundle", "int8").identity.version == "7"
    assert store.rollback().live == "8"  # a rollback of a rollback returns
    again = store.install(write_fake_bundle(tmp_path / "v8", version="8"))  # the same bundle: only linked
    assert (again.live, again.previous) == ("8", "7")
    assert sorted(p.name for p in (tmp_path / "device" / "models").iterdir()) == ["7", "8"]  # no staging left


def _corrupt_file(bundle: Path) -> Path:
    path = bundle / "classifier_int8.tflite"
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    return bundle


def _future_schema(bundle: Path) -> Path:
    values = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps({**values, "schema_version": 99}))
    return bundle


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (_corrupt_file, r"^bundle file classifier_int8.tflite does not match its sha256 in the manifest"),
        (_future_schema, r"^manifest schema version 99 is not supported"),
        (lambda b: _rewrite_selftest(b, "flipped"), r"^int8 on fake 1.0 answers up to 0\.\d+ away from the conversion"),
        (lambda b: (b / "selftest.npz").unlink() or b, r"^bundle file selftest.npz listed in the manifest is missing$"),
    ],
    ids=["corrupt-file", "wrong-schema", "failing-selftest", "missing-sample"],
)
def test_a_bad_bundle_is_refused_and_the_live_model_keeps_serving(spoil: object, message: str, tmp_path: Path) -> None:
    device = tmp_path / "device"
    store = _store(device)
    store.install(write_fake_bundle(tmp_path / "good", version="7"))
    before = _tree(device)
    bad = spoil(write_fake_bundle(tmp_path / "bad", version="8"))  # type: ignore[operator]
    with pytest.raises(BundleError, match=message):
        store.install(bad)
    assert _tree(device) == before  # nothing half-installed, the link untouched
    assert EdgeModel.load(device / "bundle", "int8").identity.version == "7"


def test_a_bundle_without_a_sample_or_with_a_taken_version_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path / "device")
    with pytest.raises(BundleError, match=r"schema 3\) has no self-test sample: convert it again"):
        store.install(write_fake_bundle(tmp_path / "old", version="6", selftest=False, schema_version=3))
    store.install(write_fake_bundle(tmp_path / "v7", version="7"))
    with pytest.raises(
        BundleError,
        match=r"^version 7 is installed already with other files: give the new bundle its own version "
        r"\(mammo-convert --model-version\)$",
    ):
        store.install(write_fake_bundle(tmp_path / "other7", version="7", threshold=0.4))
    with pytest.raises(BundleError, match=r"^there is no previous model to roll back to"):
        store.rollback()
    with pytest.raises(BundleError, match=r"the bundle's version '\.\./x' cannot name a folder"):
        store.install(write_fake_bundle(tmp_path / "evil", version="../x"))


def test_a_bundle_folder_from_an_older_install_is_adopted(tmp_path: Path) -> None:
    device = tmp_path / "device"
    write_fake_bundle(device / "bundle", version="5")  # what the previous install.sh left: a folder
    store = _store(device)
    assert [(v.version, v.live) for v in store.versions()] == [("5", True)]
    assert os.readlink(device / "bundle") == "models/5"
    assert store.install(write_fake_bundle(tmp_path / "v7", version="7")).previous == "5"


def test_an_older_folder_is_adopted_as_it_is_and_an_install_checks_with_the_stores_runtime_and_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adoption moves the folder in unread (a damaged file is found when the model loads, not by the move); a
    bundle being installed is loaded for its self-test with the store's runtime and threads, without heatmaps."""
    device = tmp_path / "device"
    old = write_fake_bundle(device / "bundle", version="5")
    (old / "classifier_int8.tflite").write_bytes(b"changed after the install")
    store = ModelStore(device / "bundle", "int8", "fake", 3)
    assert [v.version for v in store.versions()] == ["5"] and os.readlink(device / "bundle") == "models/5"
    loads: list[tuple[object, ...]] = []
    real = EdgeModel.load

    def load(folder: Path, variant: str, runtime: str, threads: int, heatmaps: bool = True) -> EdgeModel:
        loads.append((folder.name, variant, runtime, threads, heatmaps))
        return real(folder, variant, runtime, threads, heatmaps)

    monkeypatch.setattr(EdgeModel, "load", load)
    store.install(write_fake_bundle(tmp_path / "v7", version="7"))
    assert loads == [(".7.staging", "int8", "fake", 3, False)]


def test_the_model_commands_print_what_they_did_and_refuse_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    link = tmp_path / "device" / "bundle"
    given = ["--bundle", str(link), "--config", str(tmp_path / "none.toml"), "--no-restart"]
    (tmp_path / "none.toml").write_text("")
    assert main(["model", "install", str(write_fake_bundle(tmp_path / "v7", version="7")), *given]) == EXIT_OK
    printed = capsys.readouterr().out
    assert "self-test passed: int8 on fake 1.0, 8 images" in printed and "model 7 is live; previous: none" in printed
    bad = _corrupt_file(write_fake_bundle(tmp_path / "v8", version="8"))
    assert main(["model", "install", str(bad), *given]) == EXIT_REFUSED
    assert "does not match its sha256" in capsys.readouterr().err
    assert main(["model", "list", *given]) == EXIT_OK
    assert capsys.readouterr().out.split()[:2] == ["7", "live"]
    assert main(["model", "rollback", *given]) == EXIT_REFUSED
    assert main(["selftest", "--bundle", str(link), "--config", str(tmp_path / "none.toml")]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("self-test passed: int8 on fake 1.0, 8 images")
    assert lines[1].startswith("self-test scan: classified, ") and "(model 7, int8, fake 1.0)" in lines[1]


def test_the_selftest_figures_lead_with_keras_float_and_carry_the_conversion_beside(tmp_path: Path) -> None:
    model = EdgeModel.load(write_fake_bundle(tmp_path / "b"), "int8", heatmaps=False)
    report = run_selftest(model, limit=None)
    figures = json.loads(json.dumps(report.figures(model)))  # a result file as written
    assert figures == {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "runtime": report.runtime,
        "model": {"name": model.manifest.name, "version": model.manifest.version, "variant": "int8"},
        "images": 8,
        "threshold": report.threshold,
        "agreement": report.agreement_keras,
        "max_abs_prob_diff": report.max_abs_prob_diff_keras,
        "against_conversion": {"agreement": 1.0, "max_abs_prob_diff": 0.0, "allowed_max_abs_prob_diff": MAX_DRIFT},
        "passed": True,
        "probabilities": list(report.probabilities),
    }
    flipped = EdgeModel.load(_rewrite_selftest(write_fake_bundle(tmp_path / "f"), "flipped"), "int8", heatmaps=False)
    assert run_selftest(flipped, limit=None).figures(flipped)["passed"] is False


def test_versions_are_listed_in_install_order_and_only_installed_folders_count(tmp_path: Path) -> None:
    device = tmp_path / "device"
    store = _store(device)
    (device / "models" / ".10.staging").mkdir(parents=True)  # a crash's leftover: cleared, never listed
    (device / "models" / ".10.staging" / "partial").write_bytes(b"x")
    for version in ("9", "10"):
        store.install(write_fake_bundle(tmp_path / version, version=version))
    (device / "models" / "notes.txt").write_text("not a version")
    (device / "models" / ".trash").mkdir()  # a hidden folder a person made
    assert [(v.version, v.live, v.previous) for v in store.versions()] == [("9", False, True), ("10", True, False)]


@pytest.mark.parametrize("version", [".hidden", "a/b", " 7", "7 "])
def test_a_version_that_cannot_name_a_folder_is_refused(tmp_path: Path, version: str) -> None:
    with pytest.raises(BundleError) as refused:
        _store(tmp_path / "device").install(write_fake_bundle(tmp_path / "bundle", version=version))
    assert str(refused.value) == f"the bundle's version {version!r} cannot name a folder"


def test_installing_or_rolling_back_to_an_installed_version_checks_it_again(tmp_path: Path) -> None:
    device = tmp_path / "device"
    store = _store(device)
    for version in ("7", "8"):
        store.install(write_fake_bundle(tmp_path / version, version=version))
    assert store.rollback().selftest.images == 8 and store.install(tmp_path / "8").selftest.images == 8
    _corrupt_file(device / "models" / "7")
    with pytest.raises(BundleError, match=r"^bundle file classifier_int8\.tflite does not match its sha256"):
        store.rollback()
    with pytest.raises(BundleError, match=r"^bundle file classifier_int8\.tflite does not match its sha256"):
        store.install(tmp_path / "7")
    assert store.live() == "8"


def test_a_previous_version_removed_by_hand_or_a_folder_beside_its_copy_is_refused(tmp_path: Path) -> None:
    device = tmp_path / "device"
    store = _store(device)
    for version in ("7", "8"):
        store.install(write_fake_bundle(tmp_path / version, version=version))
    shutil.rmtree(device / "models" / "7")
    with pytest.raises(BundleError) as refused:
        store.rollback()
    assert str(refused.value) == f"the previous model 7 is no longer installed ({device / 'models' / '7'} is missing)"
    (device / "bundle").unlink()
    write_fake_bundle(device / "bundle", version="8")  # a folder again, as an older install.sh left it
    with pytest.raises(BundleError) as refused:
        store.versions()
    assert str(refused.value) == f"{device / 'bundle'} is a folder and models/8 exists too: move one of them away"


def test_the_sample_refuses_by_name_what_it_lacks_or_cannot_read(tmp_path: Path) -> None:
    bundle = write_fake_bundle(tmp_path / "bundle")
    manifest = load_manifest(bundle)
    sample = read_selftest(bundle, manifest)
    for kept in ({"images": sample.images}, {"keras": sample.keras}):
        with (bundle / "selftest.npz").open("wb") as handle:
            np.savez(handle, **kept)
        with pytest.raises(BundleError) as refused:
            read_selftest(bundle, manifest)
        assert str(refused.value) == "the bundle's self-test sample lacks 'images' or 'keras'"
    (bundle / "selftest.npz").write_bytes(b"not an archive")
    with pytest.raises(BundleError, match=r"^the bundle's self-test sample cannot be read: "):
        read_selftest(bundle, manifest)


def test_the_sample_scan_is_the_first_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = write_fake_bundle(tmp_path / "bundle")
    manifest = load_manifest(bundle)
    images = read_selftest(bundle, manifest).images
    assert not np.array_equal(images[0], images[1])
    decoded = cv2.imdecode(np.frombuffer(sample_scan(bundle, manifest), np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(decoded, images[0][..., 0])
    monkeypatch.setattr(cv2, "imencode", lambda *args: (False, None))
    with pytest.raises(BundleError, match=r"^the bundle's first self-test image cannot be written as a PNG$"):
        sample_scan(bundle, manifest)


@pytest.mark.parametrize("limit", [1, 3, None])
def test_the_selftest_runs_the_first_images_it_is_asked_for(tmp_path: Path, limit: int | None) -> None:
    model = EdgeModel.load(write_fake_bundle(tmp_path / "bundle", threshold=0.37), "int8")
    report = check_selftest(model, limit)
    assert report.images == len(report.probabilities) == (8 if limit is None else limit)
    assert report.threshold == 0.37 and report.line().startswith("self-test passed: int8 on ")


def test_a_sample_without_images_or_without_the_variants_answers_is_refused(tmp_path: Path) -> None:
    bundle = write_fake_bundle(tmp_path / "bundle")
    sample = read_selftest(bundle, load_manifest(bundle))
    model = EdgeModel.load(bundle, "int8")  # verified as it came; the sample is rewritten under it below
    for written, message in (
        (SelfTestSample(sample.images[:0], sample.keras[:0], {"int8": sample.answers["int8"][:0]}), "holds no images"),
        (SelfTestSample(sample.images, sample.keras, {}), "has no answers for int8"),
    ):
        write_selftest(bundle, written)
        with pytest.raises(BundleError) as refused:
            run_selftest(model)
        assert str(refused.value) == f"the bundle's self-test sample {message}"


def test_a_failing_report_says_so_and_a_probability_at_the_threshold_is_malignant() -> None:
    report = SelfTestReport("int8", "fake", 8, 0.5, (0.5,), 1.0, 0.125, 0.875, 0.25)
    assert report.line() == (
        "self-test FAILED: int8 on fake, 8 images; against the conversion: agreement 1.000, largest difference "
        "1.25e-01; against Keras float: agreement 0.875, largest difference 0.2500"
    )
    assert report.failures == [
        "int8 on fake answers up to 0.1250 away from the conversion's own answers on the bundle's sample (allowed 0.1)"
    ]
    at, below = np.array([0.5, 0.5]), np.array([0.5, 0.4999])
    assert selftest_module._agreement(at, below, 0.5) == selftest_module._agreement(below, at, 0.5) == 0.5


def test_the_sample_file_is_the_same_bytes_for_the_same_arrays_and_counts_its_images(tmp_path: Path) -> None:
    bundle = write_fake_bundle(tmp_path / "b")
    sample = read_selftest(bundle, load_manifest(bundle))
    entries = [write_selftest(bundle, sample) for _ in range(2)]
    assert entries[0] == entries[1] and entries[0].images == len(sample.images) == 8
    with zipfile.ZipFile(bundle / entries[0].file) as archive:  # fixed dates: the file's hash is the arrays' own
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
