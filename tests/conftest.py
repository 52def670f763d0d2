"""Shared fixtures: synthetic data made by the project's own generator, DICOM files written with pydicom, and the
real MIAS films from ``../shared`` when they are there (tests that need them skip with the reason otherwise)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
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


FREE_DISK_NEEDED = 4 * 1024**3
"""What the whole suite needs free under its temporary root: about 3 GB at its peak (the two model builds, the bundles
and scans the tests write), with room to spare. On a fuller disk a run ends in errors at every test's setup and an
INTERNALERROR that hide the cause, as it once did on CI."""


def pytest_sessionstart(session: pytest.Session) -> None:
    """The whole suite (no paths given) refuses to start, naming the folder and both sizes, on a disk that cannot hold
    it; a run of chosen tests is left alone."""
    config = session.config
    if hasattr(config, "workerinput") or config.args_source is not pytest.Config.ArgsSource.TESTPATHS:
        return
    where = Path(config.option.basetemp or tempfile.gettempdir()).resolve()
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    if free < FREE_DISK_NEEDED:
        pytest.exit(
            f"only {free / 1024**3:.1f} GiB free under {where}; the whole suite needs {FREE_DISK_NEEDED / 1024**3:.0f}"
            " GiB there: free some space (old pytest-of-* folders?) or give --basetemp on a larger disk",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


MODEL_GROUPS = {
    "trained_run": "learning",
    "learning_bundle": "learning",
    # With the learning check's group, not a group of its own: xdist hands out the largest groups first and a group of
    # one test among the single tests, so the shuffled run's training (minutes) once started last, with the other
    # worker idle.
    "shuffled_run": "learning",
    "plumbing_run": "plumbing",
    "bundle": "plumbing",
}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the groups into node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make test` runs two workers (pytest-xdist, ``--dist loadgroup``). The tests of one session-built model go
    to one worker together, so each model is built once: the learning check, its bundle and the shuffled-labels run
    on one, the plumbing run and its bundle on the other. Everything else spreads over both; TensorFlow's graph
    tracing is single-threaded, so two builds side by side use the two cores that one leaves half idle. A model's
    build has a budget of its own (`SessionBuilds`), so the tests that use one time only their own body."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        group = next((MODEL_GROUPS[name] for name in MODEL_GROUPS if name in used), None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
            item.add_marker(pytest.mark.timeout(func_only=True))


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


# --- trained fixtures (TensorFlow): each built once per session (tests/modelbuild.py), shared by training, conversion
# and device tests ---

BUILD_BUDGET_S = 1500
"""What one model build (a training, or a conversion) may take before it counts as failed: the learning check's
build is the longest (about 10 minutes on an AVX2-only 2-core host, measured in benchmarks/results/ci-run.json)."""


class SessionBuilds:
    """Builds each model once per test worker, in a child process (tests/modelbuild.py) with its own budget.

    The time goes to no test's timeout (the tests that use these fixtures time only their own body); a build that
    fails or runs out of time fails every test that needs it with one plain line naming the build and why, instead
    of a stack per test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.built: dict[tuple[str, str], Path] = {}

    def get(self, what: str, name: str) -> Path:
        key = (what, name)
        if importlib.util.find_spec("tensorflow") is None:
            pytest.skip("training needs the train extra (TensorFlow)")
        if key not in self.built:
            out = self.root / name
            log = out.with_suffix(f".{what}.log")
            out.mkdir(parents=True, exist_ok=True)
            command = [sys.executable, str(REPO / "tests" / "modelbuild.py"), what, name, str(out)]
            try:
                with log.open("w") as handle:
                    subprocess.run(
                        command, stdout=handle, stderr=subprocess.STDOUT, timeout=BUILD_BUDGET_S, check=True, cwd=REPO
                    )
            except subprocess.TimeoutExpired:
                pytest.fail(f"building the {name} {what} ran past its {BUILD_BUDGET_S} s budget (log: {log})", False)
            except subprocess.CalledProcessError:
                last = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
                pytest.fail(f"building the {name} {what} failed: {last[0]} (log: {log})", False)
            self.built[key] = out / what
        return self.built[key]


@pytest.fixture(scope="session")
def builds(tmp_path_factory: pytest.TempPathFactory) -> SessionBuilds:
    return SessionBuilds(tmp_path_factory.mktemp("models"))


def _given_bundle() -> Path | None:
    """``MAMMO_TEST_BUNDLE``: run the slow tests against a bundle already made (`make demo`'s, say) instead of
    training and converting them (minutes); CI never sets it."""
    given = os.environ.get("MAMMO_TEST_BUNDLE")
    return Path(given).resolve() if given else None


def _given_run(bundle: Path) -> Path:
    from edge_app.manifest import load_manifest

    return Path(load_manifest(bundle).training["run"])


@pytest.fixture(scope="session")
def trained_run(builds: SessionBuilds) -> Path:
    """A hybrid trained from scratch on synthetic data (96 px, 4 epochs): the project's learning check."""
    given = _given_bundle()
    return _given_run(given) if given is not None else builds.get("run", "learning")


@pytest.fixture(scope="session")
def learning_bundle(trained_run: Path, builds: SessionBuilds) -> Path:
    """The learning check converted (int8 + float32) through the product's gate, recalibration included; verified in
    the tflite-runtime venv when present."""
    given = _given_bundle()
    return given if given is not None else builds.get("bundle", "learning")


@pytest.fixture(scope="session")
def shuffled_run(builds: SessionBuilds) -> Path:
    """The learning check's recipe with labels shuffled between groups: must not learn."""
    return builds.get("run", "shuffled")


@pytest.fixture(scope="session")
def plumbing_run(builds: SessionBuilds) -> Path:
    """A small hybrid (64 px, 2 epochs, deterministic; its split is the run's splits.csv) for the tests that need a
    model, not a good one."""
    given = _given_bundle()
    return _given_run(given) if given is not None else builds.get("run", "plumbing")


@pytest.fixture(scope="session")
def bundle(plumbing_run: Path, builds: SessionBuilds) -> Path:
    """The plumbing run converted (int8 + float32, no repair search): what the daemon, benchmark, deployment and
    conversion-interface tests run."""
    given = _given_bundle()
    return given if given is not None else builds.get("bundle", "plumbing")


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
