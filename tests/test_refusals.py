"""Every way a scan is refused, each asserted by its own stage, kind and reason, through the daemon's real pipeline and
the real analyser (on a fake model, tests/fakemodel.py); and every exit code of ``mammo-edge``.

Exit codes, for every console tool of the project: 0 done; 1 done, but some input was not classified (refused or
needs a region) or a check failed; 2 refused to start (a bad configuration, bundle, argument or input folder)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from dicomfiles import dicom_bytes
from fakemodel import FAKE_RUNTIME, write_fake_bundle

import edge_app.model as model_module
from edge_app.cli import main
from edge_app.config import Config, IngestSection, PathsSection
from edge_app.model import EdgeModel
from edge_app.scope import ScopeLimits
from edge_app.service.analyse import Analysis, ModelAnalyser, Sidecar
from edge_app.service.daemon import build_pipeline
from edge_app.service.journal import Journal
from edge_app.service.lifecycle import ScanState


@pytest.fixture(autouse=True)
def fake_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_module, "load_runtime", lambda name: FAKE_RUNTIME)


def _png(pixels: np.ndarray) -> bytes:
    return cv2.imencode(".png", pixels)[1].tobytes()


def _patch() -> np.ndarray:
    return (np.add.outer(np.arange(48), np.arange(48)) % 50 + 100).astype(np.uint8)


ROI = '{"regions": [{"label": "A", "x": 24, "y": 24, "radius": 8}]}'

# name, content, sidecar (name, content) or None, stage, kind, the reason's beginning
REFUSALS: list[tuple[str, Callable[[], bytes], tuple[str, bytes] | None, str, str, str]] = [
    ("empty.png", lambda: b"", None, "decode", "EmptyImageError", "the file is empty (0 bytes)"),
    ("notes.png", lambda: b"scan of 3 May", None, "decode", "UnsupportedFormatError", "unrecognised file format"),
    ("cut.png", lambda: _png(_patch())[:60], None, "decode", "TruncatedFileError", "the PNG data is incomplete"),
    ("head.png", lambda: b"\x89PNG\r\n\x1a\n", None, "decode", "TruncatedFileError", "starts like PNG but its header"),
    (
        "flat.png",
        lambda: _png(np.full((48, 48), 7, np.uint8)),
        None,
        "decode",
        "EmptyImageError",
        "the image is one constant value (7): nothing to classify",
    ),
    (
        "huge.png",
        lambda: _png(np.tile(_patch(), (40, 40))),
        None,
        "decode",
        "TooManyPixelsError",
        "the image is 1920x1920 = 3,686,400 pixels, over the limit of 1,000,000; raise [ingest] max_pixels",
    ),
    (
        "report.dcm",
        lambda: dicom_bytes(_patch(), PixelData=None),
        None,
        "decode",
        "EmptyImageError",
        "the DICOM file has no pixel data",
    ),
    (
        "tomo.dcm",
        lambda: dicom_bytes(_patch(), NumberOfFrames=2, Rows=24),
        None,
        "decode",
        "UnsupportedFormatError",
        "multi-frame DICOM (2 frames, e.g. tomosynthesis) is not supported",
    ),
    (
        "cut.dcm",
        lambda: dicom_bytes(_patch())[:-500],
        None,
        "decode",
        "TruncatedFileError",
        "the DICOM pixel data is incomplete",
    ),
    (
        "badroi.png",
        lambda: _png(_patch()),
        ("badroi.roi.json", b"{"),
        "regions",
        "RegionError",
        "badroi.roi.json: the .roi.json sidecar is not valid JSON",
    ),
    (
        "outside.png",
        lambda: _png(_patch()),
        ("outside.roi.json", b'{"regions": [{"x": 900, "y": 9, "radius": 5}]}'),
        "regions",
        "RegionError",
        "outside.roi.json: region 'A': centre (900, 9) lies outside the 48x48 image",
    ),
    (
        "typo.png",
        lambda: _png(_patch()),
        ("typo.roi.json", b'{"regions": [{"x": 9, "y": 9, "radius": 5, "r": 1}]}'),
        "regions",
        "RegionError",
        "typo.roi.json: region 1: unknown key(s) 'r'",
    ),
    (
        "masked.png",
        lambda: _png(_patch()),
        ("masked.mask.png", _png(np.zeros((48, 48), np.uint8))),
        "regions",
        "RegionError",
        "masked.mask.png: the .mask.png sidecar marks no region (or cannot be read): the image is one "
        "constant value (0)",
    ),
    (
        "sized.png",
        lambda: _png(_patch()),
        ("sized.mask.png", _png(np.eye(10, dtype=np.uint8) * 255)),
        "regions",
        "RegionError",
        "sized.mask.png: the .mask.png sidecar is 10x10, the scan 48x48: a mask must be the scan's size",
    ),
]


def _config(root: Path) -> Config:
    folders = {name: root / name for name in ("inbox", "results", "archive", "quarantine", "state")}
    return Config(paths=PathsSection(**folders), ingest=IngestSection(settle_seconds=0.0, max_pixels=1_000_000))


@pytest.mark.parametrize(
    ("name", "content", "sidecar", "stage", "kind", "reason"), REFUSALS, ids=[refusal[0] for refusal in REFUSALS]
)
def test_each_refusal_is_quarantined_with_its_own_reason_and_the_input_kept(
    tmp_path: Path,
    name: str,
    content: Callable[[], bytes],
    sidecar: tuple[str, bytes] | None,
    stage: str,
    kind: str,
    reason: str,
) -> None:
    config = _config(tmp_path)
    model = EdgeModel.load(write_fake_bundle(tmp_path / "bundle"), variant="float32")
    analyser = ModelAnalyser(model, config.ingest.max_pixels, ScopeLimits.resolve(model.manifest.scope))
    pipeline = build_pipeline(config, Journal(config.paths.state / "journal.sqlite3"), analyser)
    data = content()
    scan = config.paths.inbox / name
    scan.write_bytes(data)
    sidecar_path = None
    if sidecar is not None:
        sidecar_path = config.paths.inbox / sidecar[0]
        sidecar_path.write_bytes(sidecar[1])
    record = pipeline.take(scan, sidecar_path)
    assert record.state is ScanState.QUARANTINED and record.failure is not None
    assert (record.failure.stage, record.failure.kind) == (stage, kind)
    assert record.failure.reason.startswith(reason), record.failure.reason
    error = json.loads((config.paths.quarantine / f"{name}.error.json").read_text())
    assert (error["stage"], error["exception"], error["reason"]) == (stage, kind, record.failure.reason)
    assert error["sha256"] == hashlib.sha256(data).hexdigest()  # which file it was, whatever its name
    assert (config.paths.quarantine / name).read_bytes() == data  # kept as it came
    if sidecar is not None:
        assert (config.paths.quarantine / sidecar[0]).read_bytes() == sidecar[1]
    assert not list(config.paths.results.glob("*.json")) and not any(config.paths.inbox.iterdir())


def test_a_scan_that_is_a_symbolic_link_is_refused_unread(tmp_path: Path) -> None:
    config = _config(tmp_path)
    model = EdgeModel.load(write_fake_bundle(tmp_path / "bundle"), variant="float32")
    analyser = ModelAnalyser(model, 10**6, ScopeLimits.resolve(model.manifest.scope))
    pipeline = build_pipeline(config, Journal(config.paths.state / "journal.sqlite3"), analyser)
    (config.paths.inbox / "link.png").symlink_to("/etc/hostname")
    record = pipeline.take(config.paths.inbox / "link.png")
    assert record.failure is not None and (record.failure.stage, record.failure.kind) == ("ingest", "SymbolicLink")
    assert record.failure.reason == "symbolic links are never followed; copy the scan itself into the inbox"
    assert (config.paths.quarantine / "link.png").is_symlink()


class _PoisonedAnalyser(ModelAnalyser):
    """The real analyser, with a bug that one file's content triggers while it is cut (`prepare`) or classified (the
    call `prepare` returns: the daemon's inference lane makes it)."""

    def __init__(self, model: EdgeModel, limits: ScopeLimits, when: str) -> None:
        super().__init__(model, 10**6, limits)
        self.when = when

    def prepare(self, data: bytes, name: str, sidecar: Sidecar | None = None) -> Callable[[], Analysis]:
        poisoned = data.startswith(b"POISON")
        if poisoned and self.when == "prepare":
            raise ZeroDivisionError("division by zero")
        classify = super().prepare(data.removeprefix(b"POISON"), name, sidecar)
        return _division_by_zero if poisoned else classify


def _division_by_zero() -> Analysis:
    raise ZeroDivisionError("division by zero")


@pytest.mark.parametrize("when", ["prepare", "classify"])
def test_an_unexpected_error_refuses_that_scan_as_a_bug_and_the_next_is_answered(tmp_path: Path, when: str) -> None:
    config = _config(tmp_path)
    model = EdgeModel.load(write_fake_bundle(tmp_path / "bundle"), variant="float32")
    analyser = _PoisonedAnalyser(model, ScopeLimits.resolve(model.manifest.scope), when)
    pipeline = build_pipeline(config, Journal(config.paths.state / "journal.sqlite3"), analyser)
    (config.paths.inbox / "poison.png").write_bytes(b"POISON" + _png(_patch()))
    (config.paths.inbox / "next.png").write_bytes(_png(_patch()))
    poisoned = pipeline.take(config.paths.inbox / "poison.png")
    assert poisoned.state is ScanState.QUARANTINED and poisoned.failure is not None
    assert (poisoned.failure.stage, poisoned.failure.kind) == ("analyse", "InternalError")
    assert poisoned.failure.reason == (
        "the analysis failed unexpectedly (ZeroDivisionError: division by zero); "
        "this is a bug: report it with this file"
    )
    assert poisoned.duplicate_of is None and poisoned.sha256 is not None
    assert (config.paths.quarantine / "poison.png").read_bytes().startswith(b"POISON")
    assert pipeline.take(config.paths.inbox / "next.png").state is ScanState.ARCHIVED


# --- mammo-edge's exit codes ---


def _write_config(tmp_path: Path, bundle: Path, **ingest: Any) -> Path:
    lines = [f'[model]\nbundle = "{bundle}"\nvariant = "float32"\n\n[paths]']
    lines += [f'{name} = "{tmp_path / name}"' for name in ("inbox", "results", "archive", "quarantine", "state")]
    lines += ["\n[ingest]", "settle_seconds = 0.0", "sidecar_wait = 0.0"]
    lines += [f"{key} = {value}" for key, value in ingest.items()]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_once_exits_0_when_all_are_classified_and_1_when_any_is_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = write_fake_bundle(tmp_path / "bundle")
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.png").write_bytes(_png(_patch()))
    command = ["once", "--model", str(bundle), "--variant", "float32", "--results", str(tmp_path / "out")]
    assert main([*command, str(inputs)]) == 0
    assert "Research use only: not for clinical use." in capsys.readouterr().out
    (inputs / "film.png").write_bytes(_png(np.tile(_patch(), (6, 6))))  # 288 px: a film, needs regions
    assert main([*command, str(inputs)]) == 1
    assert "needs_roi" in capsys.readouterr().out
    (inputs / "film.png").unlink()
    (inputs / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert main([*command, str(inputs)]) == 1
    assert "REJECTED" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--model", "{missing}", "{in}"], "is not a model bundle: manifest.json not found"),
        (["--model", "{bundle}", "--variant", "int4", "{in}"], "the bundle has no int4 classifier"),
        (["--model", "{bundle}", "--roi", "{in}/a.roi.json", "{in}", "{in}"], "--roi names the regions of one scan"),
        (["--model", "{bundle}", "--roi", "{in}/none.roi.json", "{in}/a.png"], "no such file"),
    ],
)
def test_once_exits_2_when_it_cannot_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    bundle = write_fake_bundle(tmp_path / "bundle")
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.png").write_bytes(_png(_patch()))
    (inputs / "a.roi.json").write_text(ROI)
    places = {"missing": str(tmp_path / "nothing"), "bundle": str(bundle), "in": str(inputs)}
    assert main(["once", *(argument.format(**places) for argument in arguments)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1  # one line, no traceback


def test_run_check_config_and_status_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = write_fake_bundle(tmp_path / "bundle")
    config = _write_config(tmp_path, bundle)
    assert main(["status", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "no scans yet (no journal at" in out and "model: fake-model 7 (hybrid, threshold 0.500)" in out
    (tmp_path / "inbox").mkdir(exist_ok=True)
    (tmp_path / "inbox" / "a.png").write_bytes(_png(_patch()))
    (tmp_path / "inbox" / "bad.png").write_bytes(b"nonsense")
    (tmp_path / "inbox" / "later.roi.json").write_text(ROI)  # waits for its scan; not counted as a scan
    assert main(["status", "--config", str(config)]) == 0
    assert "inbox: 2 scan(s) waiting, 1 region file(s) waiting for their scan" in capsys.readouterr().out
    assert main(["run", "--config", str(config), "--exit-when-idle"]) == 0  # a refused scan is not a failed run
    table = capsys.readouterr().out.splitlines()
    assert table[1].startswith("a.png ") and table[1].split()[1] in ("benign", "malignant")
    assert table[2].startswith("bad.png ") and "unrecognised file format" in table[2]
    assert main(["status", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "counts: archived 1, duplicates 0, quarantined 1\nlast: bad.png -> quarantined\n" in out
    assert main(["check-config", "--config", str(config)]) == 0
    assert "# model bundle OK: fake-model 7 (hybrid, variants int8, float32)" in capsys.readouterr().out
    broken = _write_config(tmp_path, tmp_path / "no-bundle")
    for command in ("run", "check-config", "status"):
        assert main([command, "--config", str(broken)]) == 2
        assert "is not a model bundle" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["fly"])
    assert usage.value.code == 2
