"""The DICOM node under SIGKILL: a modality sends 40 mammograms to the listener while the listener, the analysis
service and the forwarder are each killed at random moments (36 kills) and restarted, as systemd would. The sender
re-sends what was not acknowledged, as a modality does. In the end every image is classified exactly once and each of
its answers (an SR and a Secondary Capture) reaches the PACS."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
from dicomfiles import encode, mammogram
from dicomnode import free_port, needs_dcmtk, node_config, storescp, storescu, wait_for_port
from fakemodel import write_fake_bundle
from harness import SERVICE, records, report

from edge_app.config import DicomForwardSection, IngestSection, resolve_config
from edge_app.service.lifecycle import ScanState

ROLES = ("dicom-listen", "run", "dicom-forward")


class Node:
    """The three processes of a DICOM node, each restartable."""

    def __init__(self, config_file: Path, port: int, log: Path) -> None:
        self.config_file, self.port = config_file, port
        self.log = log.open("w")
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, role: str) -> None:
        self.processes[role] = subprocess.Popen(
            [sys.executable, str(SERVICE), role, "--config", str(self.config_file)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        if role == "dicom-listen":
            wait_for_port(self.port, process=self.processes[role])

    def kill(self, role: str) -> None:
        self.processes[role].send_signal(signal.SIGKILL)
        self.processes[role].wait(30)

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            process.wait(30)
        self.log.close()


def _films(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    films = []
    for index in range(count):
        pixels = (np.add.outer(np.arange(48), np.arange(48)) * 20 + index * 7).astype(np.uint16) % 4096
        dataset = mammogram(pixels)
        path = folder / f"{index:02d}.dcm"
        path.write_bytes(encode(dataset))
        films.append(path)
    return films


@needs_dcmtk
def test_kills_of_listener_service_and_forwarder_lose_and_repeat_nothing(tmp_path: Path) -> None:
    pacs_port = free_port()
    config = node_config(tmp_path / "node")
    config = replace(
        config,
        model=replace(config.model, bundle=write_fake_bundle(tmp_path / "bundle"), variant="float32", threads=1),
        ingest=replace(IngestSection(), settle_seconds=0.1, rescan_seconds=0.5, sidecar_wait=0.0, min_free_mb=0),
        dicom=replace(
            config.dicom,
            forward=DicomForwardSection(host="127.0.0.1", port=pacs_port, retry_seconds=0.5, retry_max_seconds=1.0),
        ),
    )
    config_file = tmp_path / "config.toml"
    config_file.write_text(config.to_toml())
    assert resolve_config(config_file, environ={}) == config  # else the processes below would wait on a bad config
    films = _films(tmp_path / "modality", 40)
    node = Node(config_file, config.dicom.port, tmp_path / "node.log")
    resends = [0]
    sent = threading.Event()

    def modality() -> None:
        for film in films:
            while storescu(config.dicom.port, film).returncode != 0:  # not acknowledged: send it again
                resends[0] += 1
                time.sleep(0.2)
        sent.set()

    rng = random.Random(36)
    kills = dict.fromkeys(ROLES, 0)
    with storescp(tmp_path / "pacs", pacs_port):
        for role in ROLES:
            node.start(role)
        sender = threading.Thread(target=modality, name="modality")
        sender.start()
        try:
            for _ in range(36):
                time.sleep(rng.uniform(0.1, 0.8))
                role = rng.choice(ROLES)
                node.kill(role)
                kills[role] += 1
                node.start(role)
            sender.join(300)
            assert sent.is_set(), "the modality could not send everything"
            deadline = time.monotonic() + 180
            expected_answers = 2 * len(films)
            while time.monotonic() < deadline and len(list((tmp_path / "pacs").iterdir())) < expected_answers:
                time.sleep(0.2)
        finally:
            node.stop()
    finals = [r for r in records(config) if r.state.final]
    uids = {pydicom.dcmread(film).SOPInstanceUID for film in films}
    assert sorted(r.input_name for r in finals) == sorted(f"{uid}.dcm" for uid in uids), "lost or repeated"
    assert all(r.state is ScanState.ARCHIVED for r in finals)
    answers = {pydicom.dcmread(path).SOPInstanceUID for path in (config.paths.results / "dicom").iterdir()}
    arrived = {pydicom.dcmread(path).SOPInstanceUID for path in (tmp_path / "pacs").iterdir()}
    assert len(answers) == 2 * len(films) and arrived == answers, "an answer did not reach the PACS"
    assert min(kills.values()) > 0, kills
    report("node-kills", {"images": len(films), "kills": kills, "resends": resends[0], "lost": 0, "duplicated": 0})
