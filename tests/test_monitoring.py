"""What a fleet's monitor sees of a device: the analysis service's Prometheus metrics (served by the web app behind a
token, and as a node-exporter textfile), parsed by the Prometheus client's own parser while scans flow, and
/healthz, which turns 503 when the analysis loop stops, stalls or pauses."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fakedevice import FAST_HASHER, fake_device
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from test_dicom_forward import Clock
from test_web_device import _wait

from edge_app.config import MetricsSection, resolve_config
from edge_app.dicom.outbox import Outbox, OutboxCollector
from edge_app.errors import ConfigError
from edge_app.service import health
from edge_app.service.daemon import Daemon
from edge_app.service.health import LOOP_HEALTH_SECONDS, Heartbeat, loop_health
from edge_app.web.accounts import AccountStore
from edge_app.web.app import create_app, web_folder

REPO = Path(__file__).resolve().parents[1]


def test_the_heartbeat_says_whether_the_loop_ticks_and_works(tmp_path: Path) -> None:
    clock = Clock()
    heartbeat = Heartbeat(tmp_path, clock)
    assert loop_health(tmp_path) == health.Health(False, "the analysis service is not running (no heartbeat)")
    heartbeat.beat()
    written = (tmp_path / health.HEARTBEAT).stat().st_mtime
    assert loop_health(tmp_path, now=written + 2).healthy
    assert loop_health(tmp_path, now=written + 2).reason == "ok: the analysis loop ticked 2.0 s ago"
    stale = loop_health(tmp_path, now=written + LOOP_HEALTH_SECONDS + 1)
    assert stale == health.Health(False, "the analysis loop last ticked 31 s ago (more than 30 s)")
    os.utime(tmp_path / health.HEARTBEAT, (1.0, 1.0))
    clock.now += 0.5
    heartbeat.beat()  # within a second of the last: not touched
    assert (tmp_path / health.HEARTBEAT).stat().st_mtime == 1.0
    clock.now += 0.5
    heartbeat.beat()
    assert (tmp_path / health.HEARTBEAT).stat().st_mtime > 1.0
    heartbeat.beat("paused: too little free space")  # a change of condition is written at once
    assert loop_health(tmp_path).reason == "the analysis loop is paused: too little free space"
    heartbeat.stop()
    assert not (tmp_path / health.HEARTBEAT).exists() and not loop_health(tmp_path).healthy


def test_the_units_watchdog_is_the_health_limit() -> None:
    unit = (REPO / "systemd" / "mammo-edge.service").read_text()
    assert f"WatchdogSec={LOOP_HEALTH_SECONDS:.0f}\n" in unit


def _patch(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 255, (56, 56), dtype=np.uint8))


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, parsed by the client library's own parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def device(tmp_path: Path, fake_runtime: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setattr(health, "METRICS_SECONDS", 0.0)  # written at every tick: the test reads each change
    built = fake_device(tmp_path)
    built.config = replace(built.config, metrics=MetricsSection(textfile=str(tmp_path / "node" / "mammo_edge.prom")))
    (tmp_path / "node").mkdir()
    yield built
    built.journal.close()


def test_metrics_move_as_scans_flow_and_healthz_follows_the_loop(device: Any, tmp_path: Path) -> None:
    config = device.config
    accounts = AccountStore(web_folder(config) / "accounts.sqlite3", hasher=FAST_HASHER)
    token = accounts.add_token("prometheus")
    bearer = {"Authorization": f"Bearer {token}"}
    outbox = Outbox(config.paths.outbox)
    outbox.put("waiting.dcm", b"an answer for the PACS")
    stopping = threading.Event()
    daemon = Daemon(config, device.analyser, stopping=stopping)
    daemon.metrics.registry.register(OutboxCollector(outbox))  # as the CLI does where answers are forwarded
    thread = threading.Thread(target=daemon.run, name="the daemon")
    with TestClient(create_app(config, accounts)) as client:
        assert client.get("/healthz").status_code == 503
        assert client.get("/metrics").status_code == 401  # a token, or nothing
        assert client.get("/metrics", headers=bearer).status_code == 503  # nothing written yet
        thread.start()
        try:
            assert daemon.ready.wait(30)
            _wait(lambda: client.get("/healthz").status_code == 200, what="a healthy loop")
            assert client.get("/healthz").text.startswith("ok: the analysis loop ticked")

            def metrics() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
                response = client.get("/metrics", headers=bearer)
                assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
                return _samples(response.text)

            _patch(config.paths.inbox / "first.png", 1)
            _wait(lambda: metrics().get(("mammo_edge_scans_total", (("status", "classified"),))) == 1, what="one scan")
            before = metrics()
            for index in range(3):
                _patch(config.paths.inbox / f"more-{index}.png", 10 + index)
            (config.paths.inbox / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
            after = _wait(
                lambda: (
                    (found := metrics()).get(("mammo_edge_scans_total", (("status", "classified"),))) == 4
                    and sum(value for (name, _), value in found.items() if name == "mammo_edge_scans_total") == 5
                    and found[("mammo_edge_queue_depth", ())] == 0
                    and found
                ),
                what="the other scans",
            )
            serving = device.analyser.identity.version  # what a rollout waits for after a restart
            assert health.device_health(config.paths.state, serving).reason.endswith(f"; serving model {serving}")
            other = health.device_health(config.paths.state, "2099.1")
            assert other == health.Health(False, f"the service serves model {serving}, not 2099.1 (yet)")
        finally:
            stopping.set()
            thread.join(timeout=30)
        assert not thread.is_alive()
        stopped = client.get("/healthz")
        assert stopped.status_code == 503 and stopped.text == "the analysis service is not running (no heartbeat)\n"
        assert health.device_health(config.paths.state, serving).reason == stopped.text.strip()
    accounts.close()

    assert after[("mammo_edge_scans_total", (("status", "quarantined"),))] == 1  # not an image: kept aside
    assert after[("mammo_edge_errors_total", (("stage", "decode"),))] == 1
    assert before[("mammo_edge_analysis_seconds_count", ())] == 1
    assert after[("mammo_edge_analysis_seconds_count", ())] == 4
    assert after[("mammo_edge_analysis_seconds_sum", ())] > before[("mammo_edge_analysis_seconds_sum", ())] > 0
    assert after[("mammo_edge_oldest_waiting_seconds", ())] == 0  # none waits
    for folder in ("inbox", "results", "state"):
        assert after[("mammo_edge_free_bytes", (("folder", folder),))] > 0
    identity = device.analyser.identity
    info = next(labels for name, labels in after if name == "mammo_edge_model_info")
    assert dict(info) == {
        "name": identity.name,
        "version": identity.version,
        "variant": identity.variant,
        "runtime": identity.runtime,
        "sha256": identity.sha256,
    }
    assert after[("mammo_edge_outbox_pending", ())] == 1 and after[("mammo_edge_outbox_rejected", ())] == 0
    assert after[("mammo_edge_outbox_oldest_seconds", ())] >= 0
    textfile = _samples((tmp_path / "node" / "mammo_edge.prom").read_text())  # for node-exporter: the same metrics
    assert textfile[("mammo_edge_scans_total", (("status", "classified"),))] == 4


def test_a_paused_loop_is_unhealthy_with_its_reason(device: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    stopping = threading.Event()
    daemon = Daemon(device.config, device.analyser, stopping=stopping)
    monkeypatch.setattr(daemon, "_disk_low", lambda: daemon.__dict__.__setitem__("_paused_for_disk", True) or True)
    thread = threading.Thread(target=daemon.run, name="the daemon")
    thread.start()
    try:
        assert daemon.ready.wait(30)
        found = _wait(lambda: "paused" in loop_health(device.config.paths.state).reason, what="the pause")
        assert found and not loop_health(device.config.paths.state).healthy
        assert loop_health(device.config.paths.state).reason == "the analysis loop is paused: too little free space"
    finally:
        stopping.set()
        thread.join(timeout=30)


def test_the_textfile_must_be_one_node_exporter_reads(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[metrics]\ntextfile = "/var/lib/node-exporter/mammo_edge.txt"\n')
    with pytest.raises(ConfigError, match=r"\[metrics\] textfile must end in \.prom"):
        resolve_config(config, environ={})


def test_the_queue_and_its_oldest_scan_are_sampled_when_the_metrics_are_written(device: Any) -> None:
    from edge_app.service.health import DeviceMetrics
    from edge_app.service.intake import InboxTracker

    clock = Clock()
    metrics = DeviceMetrics(device.config, device.analyser.identity, clock)
    tracker = InboxTracker(device.config.paths.inbox, 0.0, False, 100)
    for name, written in (("a.png", clock.now - 90), ("b.png", clock.now - 30), ("a.roi.json", clock.now - 300)):
        path = device.config.paths.inbox / name
        path.write_bytes(b"x")
        os.utime(path, (written, written))
        tracker.note(path)
    assert tracker.pending == 2 and tracker.oldest_mtime() == clock.now - 90  # a region file is not a scan
    metrics.write(tracker.pending, tracker.oldest_mtime())
    samples = _samples((device.config.paths.state / health.METRICS).read_text())
    assert samples[("mammo_edge_queue_depth", ())] == 2 and samples[("mammo_edge_oldest_waiting_seconds", ())] == 90
    clock.now += health.METRICS_SECONDS + 1  # the next write is due
    for name in ("a.png", "b.png", "a.roi.json"):
        tracker.forget(device.config.paths.inbox / name)  # every scan taken
    metrics.write_due(tracker)
    samples = _samples((device.config.paths.state / health.METRICS).read_text())
    assert samples[("mammo_edge_queue_depth", ())] == 0 and samples[("mammo_edge_oldest_waiting_seconds", ())] == 0
