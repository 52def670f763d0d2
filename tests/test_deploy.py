"""Field deployment: the hardened units, the installer (dry run, staging root, offline archive) and the model
install + rollback cycle on the installed code, with no network and under the kernel's write-xor-execute rule."""

from __future__ import annotations

import ctypes
import json
import os
import platform
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import shipped_variant
from fakemodel import write_fake_bundle

from edge_app.config import resolve_config
from edge_app.fsutil import sha256_of

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "deploy" / "install.sh"
UNINSTALL = REPO / "deploy" / "uninstall.sh"
UNITS = ("mammo-edge.service", "mammo-edge-dicom.service", "mammo-edge-forward.service", "mammo-edge-web.service")
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (make system-tools installs it)"
)


def _snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every path under `folder`: its mode and its content hash or link target."""
    state = {}
    for path in sorted(folder.rglob("*")):
        content = os.readlink(path) if path.is_symlink() else sha256_of(path) if path.is_file() else ""
        state[str(path.relative_to(folder))] = (path.lstat().st_mode, content)
    return state


def _exposure(unit: Path) -> float:
    output = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True, text=True, check=False
    ).stdout
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", output)
    assert found, output
    return float(found.group(1))


@needs_systemd_analyze
def test_the_analysis_unit_is_sandboxed_to_an_exposure_of_2_or_below() -> None:
    exposures = {name: _exposure(REPO / "systemd" / name) for name in UNITS}
    assert exposures["mammo-edge.service"] <= 2.0, exposures
    assert all(value <= 2.0 for value in exposures.values()), exposures


def _verified(units: list[Path], executable: Path, scratch: Path) -> str:
    """`systemd-analyze verify` of `units` with their ExecStart pointing at `executable` (it must exist)."""
    scratch.mkdir()
    copies = []
    for unit in units:
        copy = scratch / unit.name
        copy.write_text(unit.read_text().replace("/opt/mammo-edge/venv/bin/mammo-edge", str(executable)))
        copies.append(str(copy))
    done = subprocess.run(["systemd-analyze", "verify", *copies], capture_output=True, text=True, check=False)
    return done.stdout + done.stderr + ("" if done.returncode == 0 else f"exit {done.returncode}")


@needs_systemd_analyze
def test_every_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    executable = tmp_path / "mammo-edge"
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    assert _verified([REPO / "systemd" / name for name in UNITS], executable, tmp_path / "units") == ""
    broken = tmp_path / "broken.service"
    broken.write_text((REPO / "systemd" / "mammo-edge.service").read_text() + "ProtectSytem=strict\n")
    assert "Unknown key 'ProtectSytem'" in _verified([broken], executable, tmp_path / "broken")  # not vacuous


def _run(command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=900, **options)  # type: ignore[call-overload, no-any-return]


def test_a_dry_run_lists_every_action_and_changes_nothing(tmp_path: Path) -> None:
    bundle = write_fake_bundle(tmp_path / "bundle")
    root = tmp_path / "root"
    before = _snapshot(tmp_path)
    done = _run(["bash", str(INSTALL), "--root", str(root), "--dry-run", "--bundle", str(bundle)])
    assert done.returncode == 0, done.stderr
    assert _snapshot(tmp_path) == before and not root.exists()
    actions = [line for line in done.stdout.splitlines() if line.startswith("would ")]
    expected = [
        f"would run: install -d -m 0750 {root}/var/lib/mammo-edge",
        f"would run: python3 -m venv {root}/opt/mammo-edge/venv",
        f"would run: install -m 0644 {REPO}/deploy/config.toml {root}/etc/mammo-edge/config.toml",
        f"would run: {root}/opt/mammo-edge/venv/bin/mammo-edge model install {bundle} --config",
        f"would run: install -m 0644 {REPO}/deploy/../systemd/mammo-edge.service {root}/etc/systemd/system/",
        f"would run: install -m 0644 {REPO}/deploy/../systemd/mammo-edge-web.service {root}/etc/systemd/system/",
        "would run: ln -sfn /etc/systemd/system/mammo-edge.service",
        f"would run: {root}/opt/mammo-edge/venv/bin/mammo-edge selftest --config",
    ]
    for start in expected:
        assert any(line.startswith(start) for line in actions), (start, actions)
    assert not any("systemctl" in line for line in actions)  # a staging root is never systemctl's business


def test_a_new_config_serves_the_variant_the_bundle_has(tmp_path: Path) -> None:
    """The template serves int8; for a bundle whose int8 the gate refused, the new config is set to float32."""
    bundle = write_fake_bundle(tmp_path / "bundle", variants=("float32",), rejected={"int8": ["agreement 0.9 < 0.98"]})
    done = _run(["bash", str(INSTALL), "--root", str(tmp_path / "root"), "--dry-run", "--bundle", str(bundle)])
    assert done.returncode == 0, done.stderr
    config = tmp_path / "root" / "etc" / "mammo-edge" / "config.toml"
    assert f'would run: sed -i s/^variant = "int8"/variant = "float32"/ {config}' in done.stdout
    template = shutil.copy(REPO / "deploy" / "config.toml", tmp_path / "config.toml")
    assert _run(["sed", "-i", 's/^variant = "int8"/variant = "float32"/', str(template)]).returncode == 0
    assert resolve_config(Path(template), environ={}).model.variant == "float32"  # the edit the dry run names works


def _fake_archive(tmp_path: Path, machine: str, python: str) -> Path:
    folder = tmp_path / "archive"
    (folder / "wheels").mkdir(parents=True)
    write_fake_bundle(folder / "bundle")
    shutil.copy(INSTALL, folder / "install.sh")
    shutil.copy(INSTALL.with_name("units.sh"), folder / "units.sh")  # what install.sh sources
    (folder / "ARCHIVE.json").write_text(json.dumps({"machine": machine, "python": python, "wheels": {}}))
    return folder / "install.sh"


@pytest.mark.parametrize(
    ("arguments", "machine", "message"),
    [
        (["--root", "ROOT"], "riscv64", r"this archive is for riscv64, this machine is \w+: build one with mammo-arch"),
        (["--root", "ROOT"], "HERE", r"this archive is for Python 2\.7, this machine has 3\.\d+: build one with"),
        (["--bundle", "NOWHERE", "--root", "ROOT"], "HERE", r"NOWHERE is not a model bundle \(no manifest.json\)$"),
        (["--root", "ROOT", "--colour"], "HERE", r"unknown argument --colour \(see --help\)$"),
    ],
    ids=["machine", "python", "bundle", "argument"],
)
def test_the_installer_stops_before_changing_anything_when_a_check_fails(
    arguments: list[str], machine: str, message: str, tmp_path: Path
) -> None:
    python = "2.7" if "--bundle" not in arguments and machine == "HERE" and "--colour" not in arguments else "3.11"
    script = _fake_archive(tmp_path, platform.machine() if machine == "HERE" else machine, python)
    root = tmp_path / "root"
    given = [str(root) if a == "ROOT" else str(tmp_path / a) if a == "NOWHERE" else a for a in arguments]
    done = _run(["bash", str(script), *given])
    assert done.returncode == 2 and re.search(message, done.stderr.strip()), done.stderr
    assert not root.exists()


def _without_write_and_execute() -> None:
    """The kernel's own form of systemd's MemoryDenyWriteExecute= (Linux 6.3+), for the child only."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")


def _mdwe_available() -> bool:
    probe = "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)"
    try:
        done = subprocess.run(
            ["python3", "-c", probe], preexec_fn=_without_write_and_execute, capture_output=True, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode != 0 and b"PermissionError" in done.stderr  # the rule holds: W+X memory is refused


def _offline_env() -> dict[str, str]:
    """No pip configuration at all (this machine's points at local wheel folders): only the archive can serve."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    return {**env, "PIP_CONFIG_FILE": os.devnull}


def _versioned(bundle: Path, folder: Path, version: str, spoil: Callable[[Path], None] | None = None) -> Path:
    """A copy of `bundle` that calls itself `version` (the manifest itself is not hashed), optionally spoilt."""
    shutil.copytree(bundle, folder)
    values = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**values, "version": version}))
    if spoil is not None:
        spoil(folder)
    return folder


def _flip_a_byte(folder: Path) -> None:
    path = next(folder.glob("classifier_*.tflite"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare (no network)")
def test_the_offline_archive_installs_into_a_staging_root_and_serves_updates_and_rollbacks(
    bundle: Path, tmp_path: Path
) -> None:
    from mammo_deploy.archive import build_archive, default_python

    archive = build_archive(bundle, platform.machine(), default_python(), tmp_path / "mammo-edge-ci.tar.gz")
    with tarfile.open(archive) as opened:
        opened.extractall(tmp_path / "unpacked", filter="data")
    unpacked = tmp_path / "unpacked" / "mammo-edge-ci"
    about = json.loads((unpacked / "ARCHIVE.json").read_text())
    assert about["machine"] == platform.machine() and any(w.startswith("ai_edge_litert-") for w in about["wheels"])
    assert not any(w.startswith("tensorflow") for w in about["wheels"])  # the device gets the edge extra only

    root = tmp_path / "root"
    offline = ["unshare", "--net", "--", "bash", str(unpacked / "install.sh"), "--root", str(root)]
    before = _snapshot(tmp_path)
    dry = _run([*offline, "--dry-run"], env=_offline_env())
    assert dry.returncode == 0 and _snapshot(tmp_path) == before, dry.stderr
    done = _run(offline, env=_offline_env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    variant = shipped_variant(bundle)  # the gate may refuse the CI model's int8: the installer then serves float32
    assert f"self-test passed: {variant}" in done.stdout and "self-test scan: classified" in done.stdout
    again = _run(offline, env=_offline_env())  # idempotent: an update in place keeps the config
    assert again.returncode == 0 and f"kept the existing {root}/etc/mammo-edge/config.toml" in again.stdout
    assert not (root / "etc/systemd/system/multi-user.target.wants/mammo-edge-web.service").exists()  # off by default
    installed_config = root / "etc/mammo-edge/config.toml"
    text = installed_config.read_text().replace(
        'enabled = false\nbind_address = "127.0.0.1"', 'enabled = true\nbind_address = "0.0.0.0"'
    )
    installed_config.write_text(text)  # the clinic's network, and no certificate: the installer makes one
    web = _run(offline, env=_offline_env())
    assert web.returncode == 0, web.stdout[-3000:] + web.stderr[-3000:]
    tls = resolve_config(installed_config, environ={}).web
    assert (tls.tls_cert, tls.tls_key) == ("/etc/mammo-edge/tls/device.pem", "/etc/mammo-edge/tls/device.key")
    assert oct((root / "etc/mammo-edge/tls/device.key").stat().st_mode & 0o777) == "0o640"
    assert (root / "etc/systemd/system/multi-user.target.wants/mammo-edge-web.service").is_symlink()
    dropin = (root / "etc/systemd/system/mammo-edge-web.service.d/network.conf").read_text()
    assert "SocketBindAllow=tcp:8443\nIPAddressAllow=localhost any" in dropin
    version = json.loads((bundle / "manifest.json").read_text())["version"]
    assert os.readlink(root / "var/lib/mammo-edge/bundle") == f"models/{version}"
    assert (root / "etc/systemd/system/multi-user.target.wants/mammo-edge.service").is_symlink()
    assert oct((root / "srv/mammo-edge/inbox").stat().st_mode & 0o777) == "0o770"
    edge = root / "opt/mammo-edge/venv/bin/mammo-edge"
    freeze = _run([str(root / "opt/mammo-edge/venv/bin/pip"), "freeze"]).stdout
    assert "ai-edge-litert==" in freeze and "tensorflow" not in freeze.lower()
    if shutil.which("systemd-analyze"):
        installed = [root / "etc/systemd/system" / name for name in UNITS]
        assert _verified(installed, edge, tmp_path / "verify") == ""

    config = root / "etc/mammo-edge/config.toml"
    located = ["--config", str(config), "--bundle", str(root / "var/lib/mammo-edge/bundle")]

    def serving(tag: str) -> str:
        """Drop one scan into a fresh folder set, run the installed daemon until idle (under write-xor-execute when
        the kernel has it) and return the model version its result names."""
        folders = {name: tmp_path / tag / name for name in ("inbox", "results", "archive", "quarantine", "state")}
        for folder in folders.values():
            folder.mkdir(parents=True)
        shutil.copy(_sample_png(root), folders["inbox"] / "scan.png")
        paths = [argument for name, folder in folders.items() for argument in (f"--{name}", str(folder))]
        command = [str(edge), "run", *located, *paths, "--settle-seconds", "0.1", "--exit-when-idle"]
        run = _run(command, preexec_fn=_without_write_and_execute if _mdwe_available() else None)
        assert run.returncode == 0, run.stderr[-2000:]
        result = json.loads((folders["results"] / "scan.json").read_text())
        assert result["status"] == "classified"
        return str(result["model"]["version"])

    assert serving("first") == version
    newer = _versioned(bundle, tmp_path / "newer", f"{version}-b")
    assert _run([str(edge), "model", "install", str(newer), *located, "--no-restart"]).returncode == 0
    assert serving("updated") == f"{version}-b"
    corrupt = _versioned(bundle, tmp_path / "corrupt", f"{version}-c", _flip_a_byte)
    refused = _run([str(edge), "model", "install", str(corrupt), *located, "--no-restart"])
    assert refused.returncode == 2 and "does not match its sha256 in the manifest" in refused.stderr
    assert serving("after-refusal") == f"{version}-b"  # the good model keeps serving
    back = _run([str(edge), "model", "rollback", *located, "--no-restart"])
    assert back.returncode == 0 and f"model {version} is live; previous: {version}-b" in back.stdout
    assert serving("rolled-back") == version
    listed = _run([str(edge), "model", "list", *located]).stdout.split("\n")
    assert [line.split()[:2] for line in listed if line] == [[version, "live"], [f"{version}-b", "previous"]]

    kept = _run(["bash", str(unpacked / "uninstall.sh"), "--root", str(root)])
    assert kept.returncode == 0 and not (root / "opt/mammo-edge").exists()
    assert (root / "srv/mammo-edge/inbox").is_dir() and config.is_file()  # the clinic's records stay
    purged = _run(["bash", str(unpacked / "uninstall.sh"), "--root", str(root), "--purge"])
    assert purged.returncode == 0 and not (root / "srv/mammo-edge").exists() and not config.exists()


def _sample_png(root: Path) -> Path:
    """The bundle's first self-test image as a scan file (written by the installed code itself)."""
    target = root.parent / "sample.png"
    if not target.exists():
        python = root / "opt/mammo-edge/venv/bin/python"
        code = (
            "import sys, pathlib; from edge_app.manifest import load_manifest; from edge_app.selftest import "
            "sample_scan; b = pathlib.Path(sys.argv[1]); pathlib.Path(sys.argv[2]).write_bytes("
            "sample_scan(b, load_manifest(b)))"
        )
        done = _run([str(python), "-c", code, str(root / "var/lib/mammo-edge/bundle"), str(target)])
        assert done.returncode == 0, done.stderr
    return target


def test_the_archive_asks_for_the_pins_of_its_target_python() -> None:
    """pip would read the constraints' markers for the workstation's Python; the archive reads them for the device's."""
    from mammo_deploy.archive import CONSTRAINTS, target_pins

    pins = {python: target_pins(CONSTRAINTS.read_text(), "aarch64", python) for python in ("3.10", "3.11")}
    assert "numpy==2.2.6" in pins["3.10"] and "tomli==2.3.0" in pins["3.10"]  # Jetson: Ubuntu 22.04's Python
    assert "numpy==2.4.6" in pins["3.11"] and not any(pin.startswith("tomli") for pin in pins["3.11"])
    assert {pin.split("==")[0] for pin in pins["3.11"]} >= {"ai-edge-litert", "opencv-python-headless", "pydicom"}
    assert all(pin.count("==") == 1 for pins_of in pins.values() for pin in pins_of)  # every version pinned
