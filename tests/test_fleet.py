"""A rollout with Ansible (deploy/ansible/rollout.yml, ansible-core from PyPI) to five staging devices on this
machine, each running its analysis service on scans that keep arriving: the canary first, then a batch of three in
which one board miscomputes the new model (its self-test refuses it) and one cannot hold it (its service dies after
the switch, the health check sees it). Both are rolled back, the rollout stops, the fifth device is never touched,
and no device loses a scan. The devices run the fake model (tests/fakeboard), so the test times the rollout's own
steps, not a model."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest
from fakemodel import write_fake_bundle

from mammo_bench.boardfault import board_fault
from mammo_bench.fleet import (
    ScanFeeder,
    account,
    make_targets,
    play_recap,
    release,
    roll_out,
    stop_all,
    wait_drained,
    write_inventory,
)

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FAKE_BOARD = {"PYTHONPATH": f"{TESTS / 'fakeboard'}:{TESTS}"}
OLD, NEW = "2026.11.1", "2026.12.1"

pytestmark = pytest.mark.skipif(
    not (Path(sys.executable).parent / "ansible-playbook").is_file(), reason="ansible-core is not installed (dev extra)"
)


def test_every_file_of_the_role_and_playbook_is_valid_yaml() -> None:
    """A task file is read only when a play reaches it (a rollback's, say): a typo there would show only then."""
    import yaml

    files = sorted((REPO / "deploy" / "ansible").rglob("*.yml"))
    assert len(files) >= 9
    for path in files:
        assert yaml.safe_load(path.read_text()), path


def test_the_play_recap_is_read_per_host() -> None:
    log = (
        "TASK [x] ***\nok: [device-00]\n\nPLAY RECAP *****\n"
        "device-00                  : ok=16   changed=5    unreachable=0    failed=0    skipped=2    rescued=0    "
        "ignored=0\ndevice-02                  : ok=17   changed=5    unreachable=0    failed=1    skipped=4    "
        "rescued=1    ignored=0   \n\n"
    )
    recap = play_recap(log)
    assert recap.keys() == {"device-00", "device-02"}
    assert (recap["device-02"]["failed"], recap["device-02"]["rescued"], recap["device-00"]["changed"]) == (1, 1, 5)


def _health(target_root: Path, version: str) -> subprocess.CompletedProcess[str]:
    program = target_root / "opt/mammo-edge/venv/bin/mammo-edge"
    config = target_root / "etc/mammo-edge/config.toml"
    return subprocess.run(
        [str(program), "health", "--config", str(config), "--model-version", version],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.slow
def test_a_rollout_stops_at_a_failing_device_rolls_it_back_and_the_others_keep_serving(tmp_path: Path) -> None:
    from mammo_convert.signing import keygen
    from mammo_deploy.archive import build_archive, default_python

    key = tmp_path / "vendor-key"
    trusted = keygen(key).read_text().strip()
    old = release(write_fake_bundle(tmp_path / "fake"), tmp_path / "release-old", OLD, key)
    new = release(old, tmp_path / "release-new", NEW, key)
    archive = build_archive(old, platform.machine(), default_python(), tmp_path / "mammo-edge-fleet.tar.gz")
    targets = make_targets(tmp_path / "fleet", 5, FAKE_BOARD)
    targets[2].environment.update(board_fault("answers", NEW))  # its self-test refuses the new model
    targets[3].environment.update(board_fault("service", NEW))  # its service dies on the new model
    config = {"model": {"trusted_keys": [trusted]}, "ingest": {"settle_seconds": 0.2, "sidecar_wait": 0.0}}
    inventory = write_inventory(tmp_path / "inventory.json", targets, config, health_seconds=6)
    try:
        # The first device makes the venv the others share; they follow together (the installer leaves an identical
        # program alone, so none rewrites it under another).
        provisioned = roll_out(inventory, archive, old, [1, 4], tmp_path / "provision.log")
        assert provisioned.returncode == 0, provisioned.output()[-4000:]
        installed = [(target.root / "opt/mammo-edge/release.sha256").is_file() for target in targets]
        assert installed == [True] * 5 and "Run the release's installer" in provisioned.output()  # each ran it
        assert [target.live_version() for target in targets] == [OLD] * 5
        assert all(target.device.pid() is not None for target in targets)  # every service runs

        # The rollout also changes the config (a key, and the web app on): a failed device gets its old config back.
        changed = {**config, "journal": {"retention_days": 180.0}, "web": {"enabled": True}}
        write_inventory(inventory, targets, changed, health_seconds=6)
        configs = {target.name: (target.root / "etc/mammo-edge/config.toml").read_text() for target in targets}
        with ScanFeeder(targets, old) as feeder:
            rollout = roll_out(inventory, archive, new, [1, 3], tmp_path / "rollout.log")
            feeder.feed_once()  # and once more after it, to every device
        wait_drained(targets, feeder.fed)
        serving = [_health(target.root, str(target.live_version())) for target in targets]
        assert all(done.returncode == 0 for done in serving), [done.stdout for done in serving]
        again = roll_out(inventory, archive, new, [1], tmp_path / "again.log", limit=targets[0].name)
        assert again.returncode == 0 and play_recap(again.output())[targets[0].name]["changed"] == 0, again.output()
    finally:
        stop_all(targets)

    log = rollout.output()
    assert rollout.returncode == 2, log[-4000:]  # hosts failed: ansible-playbook says so
    assert "Run the release's installer" not in log  # the same release: the program is not installed again
    first_task_of = {target.name: log.index(f"[{target.name}]") for target in targets[:4]}
    assert first_task_of["device-00"] < min(first_task_of[name] for name in ("device-01", "device-02", "device-03"))
    assert targets[4].name not in log  # never reached
    recap = play_recap(log)
    assert {name: (counts["failed"], counts["rescued"]) for name, counts in recap.items()} == {
        "device-00": (0, 0),
        "device-01": (0, 0),
        "device-02": (1, 1),
        "device-03": (1, 1),
    }
    assert [target.live_version() for target in targets] == [NEW, NEW, OLD, OLD, OLD]
    assert "answers up to" in log and f"rolled back to model {OLD} after Install the model" in log
    assert f"rolled back to model {OLD} after Wait until the service is healthy" in log
    assert "Make the previous model live again" in log  # device-03 had switched; device-02 never did
    for target, expected in zip(targets, ("180.0", "180.0", None, None, None), strict=True):
        text = (target.root / "etc/mammo-edge/config.toml").read_text()
        web = target.root / "etc/systemd/system/multi-user.target.wants/mammo-edge-web.service"
        if expected is None:
            assert text == configs[target.name], target.name  # the previous config, back or untouched
            assert not web.exists(), target.name  # and the units as it asks: the web app off
        else:
            assert "retention_days = 180.0" in text and text != configs[target.name]
            assert web.is_symlink()  # the units follow the config: the web app enabled
    for target in targets:
        figures = account(target, feeder.fed[target.name])
        assert figures.lost == 0 and figures.quarantined == 0 and figures.answered == figures.fed > 0, target.name
        served = set(figures.versions)
        assert served == ({OLD, NEW} if target.live_version() == NEW else {OLD}), (target.name, figures.versions)
    stopped = _health(targets[0].root, NEW)
    assert stopped.returncode == 3 and "not running" in stopped.stdout
