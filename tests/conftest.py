"""Shared fixtures: synthetic data made by the project's own generator, DICOM files written with pydicom, and the
real MIAS films from ``../shared`` when they are there (tests that need them skip with the reason otherwise)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mammo_train.synth import SynthSpec, generate

REPO = Path(__file__).resolve().parents[1]
MIAS_DIR = Path(os.environ.get("MAMMO_SHARED", REPO.parent / "shared")) / "data" / "mini-mias"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long", action="store_true", help="run the reliability suite's long modes (fuzzing, load and soak in full)"
    )


MODEL_GROUPS = {"trained_run": "trained", "bundle": "trained", "shuffled_run": "shuffled", "tiny_run": "tiny"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the groups into node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make test` runs two workers (pytest-xdist, ``--dist loadgroup``). The tests of one session-trained model go
    to one worker together, so each model is trained once: the learning-check hybrid and its bundle (the longest
    group), the shuffled-labels run, the tiny deterministic run. Everything else spreads over both; TensorFlow's
    graph tracing is single-threaded, so two trainings side by side use the two cores that one leaves half idle."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        group = next((MODEL_GROUPS[name] for name in MODEL_GROUPS if name in used), None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture
def long_mode(request: pytest.FixtureRequest) -> bool:
    """``pytest --long``: the reliability suite's fuzzing, load and soak at full size (minutes); CI runs the short
    sizes."""
    return bool(request.config.getoption("--long"))


@pytest.fixture
def fake_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake model's runtime (tests/fakemodel.py) wherever a bundle is loaded in this process."""
    from fakemodel import FAKE_RUNTIME

    import edge_app.model as model_module

    monkeypatch.setattr(model_module, "load_runtime", lambda name: FAKE_RUNTIME)


@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Iterator[None]:
    """The service commands install SIGTERM/SIGINT handlers; a test that calls one in-process must not leave them
    behind (Ctrl-C would then no longer stop the suite)."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.fixture(scope="session")
def mias_dir() -> Path:
    if not (MIAS_DIR / "Info.txt").is_file():
        pytest.skip(f"real MIAS films not found at {MIAS_DIR} (../shared is absent in this clone)")
    return MIAS_DIR


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset, two sources, one copy per original."""
    root = tmp_path_factory.mktemp("synth")
    generate(root, SynthSpec(per_class=12, size=96, seed=3, copies=2, sources=("SYNTH", "OTHER")))
    return root


def _write_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    window: tuple[float, float] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A minimal valid DICOM file (explicit VR little endian) holding `pixels`."""
    from dicomfiles import dicom_bytes

    attributes: dict[str, Any] = {"PhotometricInterpretation": photometric, **(extra or {})}
    if bits_stored is not None:
        attributes.update(BitsStored=bits_stored, HighBit=bits_stored - 1)
    if window is not None:
        attributes.update(WindowCenter=window[0], WindowWidth=window[1])
    path.write_bytes(dicom_bytes(pixels, **attributes))
    return path


@pytest.fixture
def write_dicom() -> Callable[..., Path]:
    return _write_dicom


FOLDERS = ("inbox", "results", "archive", "quarantine", "state")


def write_daemon_config(
    root: Path,
    bundle: Path,
    runtime: str = "ai_edge_litert",
    variant: str = "int8",
    settle: float = 0.3,
    sidecar_wait: float = 0.0,
) -> Path:
    """A daemon config over fresh folders under `root` (one thread, fast rescans, subfolders watched; no wait for
    region sidecars unless asked)."""
    for name in FOLDERS:
        (root / name).mkdir(parents=True, exist_ok=True)
    paths = "\n".join(f'{name} = "{root / name}"' for name in FOLDERS)
    config = root / "config.toml"
    config.write_text(
        f'[model]\nbundle = "{bundle}"\nvariant = "{variant}"\nruntime = "{runtime}"\nthreads = 1\n\n'
        f"[paths]\n{paths}\n\n[ingest]\nsettle_seconds = {settle}\nrescan_seconds = 1.0\nrecursive = true\n"
        f"sidecar_wait = {sidecar_wait}\n"
    )
    return config


@pytest.fixture
def write_config() -> Callable[..., Path]:
    return write_daemon_config


@pytest.fixture
def gradient16() -> np.ndarray:
    """A 16-bit test image using the whole range, with structure in both axes."""
    rows, cols = np.mgrid[0:48, 0:64]
    return ((rows * 1000 + cols * 37) % 65536).astype(np.uint16)


# --- trained fixtures (TensorFlow): trained once per session, shared by training, conversion and device tests ---

LEARNING_SETTINGS = {"per_class": 80, "copies": 1, "size": 96, "epochs": 4, "batch_size": 16}


def _train_fixture(root: Path, shuffle_labels: bool) -> Path:
    pytest.importorskip("tensorflow", reason="training needs the train extra (TensorFlow)")
    from dataclasses import replace as dc_replace

    from mammo_train.evaluate import evaluate_run
    from mammo_train.layout import scan_dataset
    from mammo_train.runfiles import RunSettings
    from mammo_train.splits import make_split, write_splits
    from mammo_train.trainer import train_run

    s = LEARNING_SETTINGS
    generate(root / "data", SynthSpec(per_class=s["per_class"], size=s["size"], seed=0, copies=s["copies"]))
    rows = make_split(scan_dataset(root / "data"), 0.2, 0.25, 0, "mass")
    if shuffle_labels:  # shuffle labels between groups, so copies still share theirs: nothing left to learn
        groups = sorted({row.group for row in rows})
        label_of = {row.group: row.label for row in rows}
        shuffled = dict(zip(groups, np.random.default_rng(0).permutation([label_of[g] for g in groups]), strict=True))
        rows = [dc_replace(row, label=int(shuffled[row.group])) for row in rows]
    write_splits(rows, root / "splits.csv")
    settings = RunSettings(
        arch="hybrid",
        input_size=s["size"],
        weights="none",
        epochs=s["epochs"],
        batch_size=s["batch_size"],
        learning_rate=1e-3,
        patience=10,
        seed=0,
        deterministic=True,  # the same model every run, so every figure the tests read from it is fixed
    )
    files, arrays = train_run(root / "splits.csv", root / "run", settings, verbose=0)
    evaluate_run(files.path, "test", arrays=arrays)
    return files.path


def _given_bundle() -> Path | None:
    """``MAMMO_TEST_BUNDLE``: run the slow tests against a bundle already made (`make demo`'s, say) instead of
    training and converting one (minutes); CI never sets it."""
    given = os.environ.get("MAMMO_TEST_BUNDLE")
    return Path(given).resolve() if given else None


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hybrid trained from scratch on synthetic data (96 px, 4 epochs): the project's learning check."""
    given = _given_bundle()
    if given is not None:
        from edge_app.manifest import load_manifest

        return Path(load_manifest(given).training["run"])
    return _train_fixture(tmp_path_factory.mktemp("trained"), shuffle_labels=False)


TINY_TRAINING = ["--input-size", "32", "--weights", "none", "--epochs", "2", "--batch-size", "8", "--seed", "3"]


def train_tiny(split: Path, out: Path) -> Path:
    """`mammo-train --deterministic` of a tiny hybrid (32 px, 2 epochs): the full training path in a couple of
    minutes, for the checks that do not depend on what was learned."""
    from mammo_train.cli import train_main

    arguments = ["--split", str(split), "--out", str(out), *TINY_TRAINING, "--deterministic", "--quiet"]
    assert train_main(arguments) == 0
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny hybrid trained deterministically on 20 synthetic patches (its split is the run's splits.csv)."""
    pytest.importorskip("tensorflow", reason="training needs the train extra (TensorFlow)")
    from mammo_train.layout import scan_dataset
    from mammo_train.splits import make_split, write_splits

    root = tmp_path_factory.mktemp("tiny")
    generate(root / "data", SynthSpec(per_class=10, size=48, seed=5, copies=1))
    write_splits(make_split(scan_dataset(root / "data"), 0.25, 0.25, 0, "mass"), root / "splits.csv")
    return train_tiny(root / "splits.csv", root / "run")


@pytest.fixture(scope="session")
def shuffled_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run with labels shuffled between groups: must not learn."""
    return _train_fixture(tmp_path_factory.mktemp("shuffled"), shuffle_labels=True)


def shipped_variant(bundle: Path) -> str:
    """The variant the device tests run: int8 when the gate verified it for this model, else float32. The gate may
    reject a quantised variant for the CI model on some machine (the bundle then documents why, which
    test_bundle_holds_verified_files checks); CI must not fail for that, and no test may pass on a variant the
    device would refuse."""
    from edge_app.manifest import load_manifest

    return "int8" if "int8" in load_manifest(bundle).variants else "float32"


def edge_python(variable: str) -> str:
    """The interpreter of a device-only venv made by `make test`, or skip with the reason."""
    python = os.environ.get(variable)
    if not python:
        pytest.skip(f"{variable} (a device-only venv made by `make test`) is not set")
    return python


@pytest.fixture(scope="session")
def bundle(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained run converted (int8 + float32) through the default gate; verified in the tflite-runtime venv when
    present."""
    from mammo_convert.cli import main as convert_main

    given = _given_bundle()
    if given is not None:
        return given
    out = tmp_path_factory.mktemp("bundle") / "bundle"
    extra = (
        ["--check-python", os.environ["MAMMO_TEST_TFLITE_PYTHON"]] if os.environ.get("MAMMO_TEST_TFLITE_PYTHON") else []
    )
    # The default gate's thresholds. Its repair stops after recalibrating (no layer left in float): this model's int8
    # can need the selective repair, whose attempts would double the suite's time; its reach over many seeds is what
    # `mammo-bench gate` measures and commits (benchmarks/results/gate-stability.json).
    extra += ["--float-budget", "0"]
    code = convert_main(
        [str(trained_run), "--out", str(out), "--variants", "int8,float32", "--calibration", "96", *extra]
    )
    assert code == 0, "the conversion gate rejected the CI model"
    return out
