"""A fleet on one machine: staging roots stand in for devices, each running its analysis service on scans that keep
arriving, and deploy/ansible/rollout.yml (ansible-playbook, local connection) rolls a release out to them.

Used by the rollout's test (over the fake model) and by ``mammo-bench fleet`` (over a real bundle), which commits
``benchmarks/results/fleet-rollout.json``. Every device runs the installer from the offline archive; the devices after
the first share its virtual environment (a link, ``opt/mammo-edge/venv``: the installer then takes about 8 s instead
of 22 s here), so the first device is provisioned alone; the others may then follow together (the installer leaves an
identical program alone, so none rewrites the venv under another). A rollout of a new model leaves the program alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_app.errors import MeasurementError
from edge_app.manifest import MANIFEST, load_manifest
from edge_app.selftest import read_selftest
from mammo_bench.staging import StagingDevice

PLAYBOOK = Path(__file__).resolve().parents[2] / "deploy" / "ansible" / "rollout.yml"
GROUP = "mammo_edge"
FEED_SECONDS = 1.0  # each running device gets a scan this often
DRAIN_SECONDS = 180.0


def release(bundle: Path, folder: Path, version: str, key: Path | None = None) -> Path:
    """A copy of `bundle` that calls itself `version` (the manifest names its files' hashes, not itself), signed
    with `key` when given (``mammo-convert sign``): a new model release for a rollout."""
    shutil.copytree(bundle, folder)
    manifest = folder / MANIFEST
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "version": version}, indent=2))
    (folder / "manifest.sig").unlink(missing_ok=True)
    if key is not None:
        _convert_tool("sign", str(folder), "--key", str(key))
    return folder


def _convert_tool(*arguments: str) -> None:
    """``mammo-convert`` of this environment (the workstation's signing commands)."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "mammo-convert"), *arguments], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise MeasurementError(f"mammo-convert {arguments[0]} failed: {done.stderr.strip()}")


@dataclass(frozen=True)
class Target:
    """One staging device: its root and the environment its commands and service run in (a board fault, say)."""

    name: str
    root: Path
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def device(self) -> StagingDevice:
        return StagingDevice(self.root)

    def folder(self, name: str) -> Path:
        return self.root / "srv" / "mammo-edge" / name

    def live_version(self) -> str | None:
        link = self.root / "var/lib/mammo-edge/bundle"
        return Path(os.readlink(link)).name if link.is_symlink() else None

    def answered_by(self) -> dict[str, str]:
        """Each result's scan name -> the model version that answered it."""
        answers = {}
        for path in self.folder("results").glob("fleet-*.json"):
            answers[path.stem] = json.loads(path.read_text())["model"]["version"]
        return answers


def make_targets(folder: Path, count: int, environment: dict[str, str]) -> list[Target]:
    """`count` empty staging roots; the second and later share the first one's virtual environment."""
    targets = [
        Target(f"device-{index:02d}", folder / f"device-{index:02d}", dict(environment)) for index in range(count)
    ]
    for target in targets[1:]:
        (target.root / "opt/mammo-edge").mkdir(parents=True)
        (target.root / "opt/mammo-edge/venv").symlink_to(targets[0].root / "opt/mammo-edge/venv")
    return targets


def write_inventory(path: Path, targets: Sequence[Target], config: dict[str, Any], health_seconds: int = 60) -> Path:
    """An inventory of `targets` in group ``mammo_edge``, reached by the local connection, each restarted by
    `mammo_bench.staging`; `config` is every device's ``mammo_edge_config``."""
    hosts = {
        target.name: {
            "mammo_edge_root": str(target.root),
            "mammo_edge_restart_command": f"{sys.executable} -m mammo_bench.staging restart {target.root}",
            "mammo_edge_environment": target.environment,
        }
        for target in targets
    }
    group = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "mammo_edge_config": config,
        "mammo_edge_health_seconds": health_seconds,
    }
    path.write_text(json.dumps({GROUP: {"hosts": hosts, "vars": group}}, indent=2))
    return path


@dataclass(frozen=True)
class Rollout:
    returncode: int
    seconds: float
    log: Path

    def output(self) -> str:
        return self.log.read_text()


def roll_out(
    inventory: Path, archive: Path, bundle: Path, batches: Sequence[int | str], log: Path, limit: str | None = None
) -> Rollout:
    """Run rollout.yml over `inventory` (or its hosts `limit` names: ansible-playbook's ``--limit``) with
    ansible-playbook from this Python's environment, its output in `log`."""
    playbook = Path(sys.executable).parent / "ansible-playbook"
    if not playbook.is_file():
        raise MeasurementError(f"{playbook} not found: pip install ansible-core (the dev extra has it)")
    scratch = log.parent / "ansible-tmp"
    scratch.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "ANSIBLE_LOCAL_TEMP": str(scratch),
        "ANSIBLE_REMOTE_TEMP": str(scratch),
        "TMPDIR": str(scratch),  # where the role packs the bundle
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_FORKS": "25",
        "ANSIBLE_PIPELINING": "1",  # each task one process, no module file copied to a temporary folder
        "PYTHONUNBUFFERED": "1",  # its lines as they come, for the stamps
    }
    extra = {"mammo_edge_archive": str(archive), "mammo_edge_bundle": str(bundle), "mammo_edge_batches": list(batches)}
    started = time.monotonic()
    with (
        log.open("w") as out,
        subprocess.Popen(
            [
                str(playbook),
                "-i",
                str(inventory),
                str(PLAYBOOK),
                "-e",
                json.dumps(extra),
                *(["--limit", limit] if limit else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        ) as playing,
    ):
        assert playing.stdout is not None
        for line in playing.stdout:  # each line stamped with the seconds since the start: where the time went
            out.write(f"{time.monotonic() - started:7.1f} {line}")
    return Rollout(playing.returncode, time.monotonic() - started, log)


class ScanFeeder:
    """Drops a distinct scan into every target's inbox each `FEED_SECONDS` (written under a hidden name, then
    renamed: the service never sees half a file), remembering what it gave each."""

    def __init__(self, targets: Sequence[Target], bundle: Path, period: float = FEED_SECONDS) -> None:
        self.targets = targets
        self.period = period
        self.fed: dict[str, list[str]] = {target.name: [] for target in targets}
        self._image = read_selftest(bundle, load_manifest(bundle)).images[0]  # the bundle's own sample image
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._feed, name="scan-feeder", daemon=True)
        self._sequence = 0

    def __enter__(self) -> ScanFeeder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join()

    def feed_once(self) -> None:
        for target in self.targets:
            self._sequence += 1
            name = f"fleet-{self._sequence:06d}"
            image = self._image.copy()
            image.flat[:4] = np.frombuffer(self._sequence.to_bytes(4, "big"), np.uint8)  # no two scans alike
            ok, encoded = cv2.imencode(".png", image)
            if not ok:
                raise MeasurementError("the sample scan cannot be written as a PNG")
            inbox = target.folder("inbox")
            hidden = inbox / f".{name}.png.part"
            hidden.write_bytes(encoded.tobytes())
            hidden.rename(inbox / f"{name}.png")
            self.fed[target.name].append(name)

    def _feed(self) -> None:
        while not self._stopping.wait(self.period):
            self.feed_once()


@dataclass(frozen=True)
class Account:
    """What became of the scans fed to one device."""

    fed: int
    answered: int
    quarantined: int
    lost: int
    versions: dict[str, int]  # model version -> scans it answered


def account(target: Target, fed: Sequence[str]) -> Account:
    answers = target.answered_by()
    quarantined = {path.stem for path in target.folder("quarantine").glob("fleet-*.png")}
    answered = [name for name in fed if name in answers]
    versions: dict[str, int] = {}
    for name in answered:
        versions[answers[name]] = versions.get(answers[name], 0) + 1
    lost = sum(name not in answers and name not in quarantined for name in fed)
    return Account(len(fed), len(answered), len(quarantined & set(fed)), lost, versions)


def wait_drained(targets: Sequence[Target], fed: dict[str, list[str]], timeout: float = DRAIN_SECONDS) -> None:
    """Until every scan fed has a result or was quarantined, looking once a second (every result file is read);
    a MeasurementError after `timeout`."""
    deadline = time.monotonic() + timeout
    while any(account(target, fed[target.name]).lost for target in targets):
        if time.monotonic() > deadline:
            raise MeasurementError(f"the devices did not answer every scan they were given within {timeout:.0f} s")
        time.sleep(1.0)


def stop_all(targets: Sequence[Target]) -> None:
    for target in targets:
        target.device.stop()


def play_recap(log: str) -> dict[str, dict[str, int]]:
    """ansible-playbook's PLAY RECAP (its lines stamped by `roll_out` or not): host -> its counts (ok, changed,
    failed, rescued...)."""
    counts: dict[str, dict[str, int]] = {}
    for line in log.split("PLAY RECAP", 1)[-1].splitlines()[1:]:
        head, colon, tally = line.partition(" : ")
        if colon and head.split():
            counts[head.split()[-1]] = {key: int(value) for key, value in (item.split("=") for item in tally.split())}
    return counts


def measure_fleet(
    bundle: Path, root: Path, count: int, batch: int, failing: int, feed_seconds: float, health_seconds: int
) -> dict[str, Any]:
    """Provision `count` staging devices with a release of `bundle` (the offline archive, the model, the services
    running), then roll a newer version of the same model out to them (a canary, then batches of `batch`) while each
    gets a scan every `feed_seconds`; device `failing` miscomputes the new version (`boardfault` ``answers``). The
    rollout's seconds, the failed and rolled-back devices, and every scan accounted for."""
    import platform

    from mammo_bench import boardfault
    from mammo_deploy.archive import build_archive, default_python

    if not 0 <= failing < count:
        raise MeasurementError(f"--failing must name one of the {count} devices (0 to {count - 1})")
    key = root / "vendor-key"
    _convert_tool("keygen", str(key))
    trusted = key.with_name(f"{key.name}.pub").read_text().strip()
    base = load_manifest(bundle).version
    old_version, new_version = f"{base}.1", f"{base}.2"
    old = release(bundle, root / "release-old", old_version, key)
    new = release(bundle, root / "release-new", new_version, key)
    archive = build_archive(old, platform.machine(), default_python(), root / "mammo-edge-fleet.tar.gz")
    targets = make_targets(root / "fleet", count, {})
    site = Path(boardfault.__file__).parent / "boardfault_site"
    targets[failing].environment.update({"PYTHONPATH": str(site), **boardfault.board_fault("answers", new_version)})
    config = {
        "model": {"trusted_keys": [trusted], "threads": 1},
        "ingest": {"settle_seconds": 0.5, "sidecar_wait": 0.0},
    }
    inventory = write_inventory(root / "inventory.json", targets, config, health_seconds)
    try:
        provisioned = roll_out(inventory, archive, old, [1], root / "provision.log")
        if provisioned.returncode != 0:
            raise MeasurementError(f"provisioning the devices failed (log: {provisioned.log})")
        with ScanFeeder(targets, old, feed_seconds) as feeder:
            time.sleep(2 * feed_seconds)  # every device busy before the rollout starts
            rollout = roll_out(inventory, archive, new, [1, batch], root / "rollout.log")
            time.sleep(2 * feed_seconds)
        wait_drained(targets, feeder.fed)
    finally:
        stop_all(targets)
    recap = play_recap(rollout.output())
    failed = sorted(name for name, counts in recap.items() if counts.get("failed", 0))
    rolled_back = sorted(
        target.name for target in targets if target.name in failed and target.live_version() == old_version
    )
    accounts = {target.name: account(target, feeder.fed[target.name]) for target in targets}
    return {
        "targets": count,
        "batches": [1, batch],
        "seconds": round(rollout.seconds, 1),
        "provision_seconds": round(provisioned.seconds, 1),
        "returncode": rollout.returncode,
        "failed": len(failed),
        "failed_targets": failed,
        "rolled_back": len(rolled_back),
        "reached": len(recap),
        "on_new_version": sum(target.live_version() == new_version for target in targets),
        "scans_fed": sum(figures.fed for figures in accounts.values()),
        "scans_answered": sum(figures.answered for figures in accounts.values()),
        "scans_quarantined": sum(figures.quarantined for figures in accounts.values()),
        "scans_lost": sum(figures.lost for figures in accounts.values()),
        "per_target": {
            name: {"live": targets[index].live_version(), "versions_answered": figures.versions}
            for index, (name, figures) in enumerate(accounts.items())
        },
    }
