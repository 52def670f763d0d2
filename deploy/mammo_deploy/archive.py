"""``mammo-archive``: one file that installs mammo-edge on a device with no internet.

Built on a workstation (which has the internet) for one target: its CPU (x86_64, or aarch64 for a Raspberry Pi on
Raspberry Pi OS Bookworm and for a Jetson on JetPack 6) and its Python (3.11 on Bookworm, 3.10 on Ubuntu 22.04). It
holds the project's wheel, every dependency's wheel for that target at the versions ``deploy/constraints.txt`` pins
(the ones CI tested), the model bundle, the installer, the units, the config template and the field guide. On the
device: ``tar xf mammo-edge-….tar.gz && sudo ./mammo-edge-…/install.sh`` (no network is needed).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from edge_app.errors import DataError, MissingInputError, run_main
from edge_app.fsutil import sha256_of
from edge_app.manifest import load_manifest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CONSTRAINTS = DEPLOY / "constraints.txt"
ARCHIVE_MANIFEST = "ARCHIVE.json"
MACHINES = ("x86_64", "aarch64")
# glibc of the oldest supported target (Ubuntu 22.04: 2.35; Bookworm has 2.36): every manylinux tag up to it.
MANYLINUX_GLIBC = range(17, 36)
# What the archive carries besides wheels and bundle: (source under the checkout, name in the archive).
FILES = (
    ("deploy/install.sh", "install.sh"),
    ("deploy/uninstall.sh", "uninstall.sh"),
    ("deploy/units.sh", "units.sh"),
    ("deploy/config.toml", "config.toml"),
    ("deploy/constraints.txt", "constraints.txt"),
    ("deploy/README.md", "README.md"),
    ("systemd/mammo-edge.service", "systemd/mammo-edge.service"),
    ("systemd/mammo-edge-dicom.service", "systemd/mammo-edge-dicom.service"),
    ("systemd/mammo-edge-forward.service", "systemd/mammo-edge-forward.service"),
    ("systemd/mammo-edge-web.service", "systemd/mammo-edge-web.service"),
)


def platform_arguments(machine: str, python: str) -> list[str]:
    """pip's target for wheels of another machine: each manylinux tag it may use, the interpreter and its ABI."""
    tags = [f"manylinux2014_{machine}"] + [f"manylinux_2_{minor}_{machine}" for minor in MANYLINUX_GLIBC]
    version = python.replace(".", "")
    arguments = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp", "--abi", f"cp{version}"]
    for tag in tags:
        arguments += ["--platform", tag]
    return arguments


def target_pins(constraints: str, machine: str, python: str) -> list[str]:
    """The pinned versions that apply to the target. pip evaluates a constraint's markers on the machine it runs on,
    not on the target its --python-version names, so the archive asks for exactly these pins itself."""
    from packaging.requirements import Requirement

    environment = {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "platform_machine": machine,
        "platform_system": "Linux",
        "sys_platform": "linux",
    }
    pins = []
    for line in constraints.splitlines():
        text = line.split("  #")[0].strip()
        if not text or text.startswith("#"):
            continue
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            pins.append(f"{requirement.name}{requirement.specifier}")
    return pins


def _pip(*arguments: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *arguments]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DataError(f"pip {arguments[0]} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def build_archive(bundle: Path, machine: str, python: str, out: Path) -> Path:
    """Write the archive for (`machine`, `python`) to `out` (a .tar.gz) and return it."""
    if machine not in MACHINES:
        raise DataError(f"--machine {machine!r}: choose {' or '.join(MACHINES)}")
    if not (REPO / "pyproject.toml").is_file():
        raise MissingInputError(f"mammo-archive builds from a checkout; {REPO} has no pyproject.toml")
    manifest = load_manifest(bundle)  # only a verified bundle is shipped
    name = out.name.removesuffix(".tar.gz")
    with tempfile.TemporaryDirectory(prefix=".mammo-archive.", dir=out.parent) as temporary:
        root = Path(temporary) / name
        wheels = root / "wheels"
        wheels.mkdir(parents=True)
        _pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(REPO))
        project = next(wheels.glob("mammo_edge-*.whl"))
        pins = Path(temporary) / "pins.txt"
        pins.write_text("\n".join(target_pins(CONSTRAINTS.read_text(), machine, python)) + "\n")
        _pip("download", "--quiet", *platform_arguments(machine, python), "-r", str(pins), "-d", str(wheels))
        for source, inside in FILES:
            (root / inside).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / source, root / inside)
        shutil.copytree(bundle, root / "bundle")
        about = {
            "machine": machine,
            "python": python,
            "project": project.name,
            "model": {"name": manifest.name, "version": manifest.version, "architecture": manifest.architecture},
            "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "built_on": platform.machine(),
            "wheels": {path.name: sha256_of(path) for path in sorted(wheels.iterdir())},
        }
        (root / ARCHIVE_MANIFEST).write_text(json.dumps(about, indent=2) + "\n")
        partial = out.with_name(f".{out.name}.partial")
        with tarfile.open(partial, "w:gz", compresslevel=1) as archive:  # wheels are compressed already
            archive.add(root, arcname=name)
        partial.replace(out)
    return out


def default_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mammo-archive", description=__doc__)
    parser.add_argument("bundle", type=Path, help="the model bundle to ship (a folder written by mammo-convert)")
    parser.add_argument("--machine", default=platform.machine(), help="x86_64 or aarch64 (default: this machine)")
    parser.add_argument("--python", default=None, help="the device's Python, e.g. 3.11 (Bookworm) or 3.10 (Jetson)")
    parser.add_argument("--out", type=Path, help="the archive (default: mammo-edge-<model>-<machine>-py<XY>.tar.gz)")
    args = parser.parse_args(argv)

    def command() -> int:
        python = args.python or default_python()
        version = load_manifest(args.bundle, verify_files=False).version
        out = args.out or Path(f"mammo-edge-{version}-{args.machine}-py{python.replace('.', '')}.tar.gz")
        if not out.name.endswith(".tar.gz"):
            raise DataError(f"--out {out}: the archive's name must end in .tar.gz")
        built = build_archive(args.bundle, args.machine, python, out.resolve())
        print(f"{built} ({built.stat().st_size / 1e6:.1f} MB): copy it to the device, then")
        print(f"  tar xf {built.name} && sudo ./{built.name.removesuffix('.tar.gz')}/install.sh")
        return 0

    return run_main("mammo-archive", command)


if __name__ == "__main__":
    sys.exit(main())
