"""The daemon as a real subprocess in a TensorFlow-free venv, on real folders: drops, slow writers, bad files,
duplicates, collisions, links, systemd notifications, SIGTERM, and SIGKILL at random moments."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import FOLDERS, REPO, edge_python, shipped_variant, write_daemon_config

pytestmark = pytest.mark.slow

RUNTIMES = [("MAMMO_TEST_EDGE_PYTHON", "ai_edge_litert"), ("MAMMO_TEST_TFLITE_PYTHON", "tflite_runtime")]


def _scans(bundle: Path, count: int) -> list[Path]:
    from edge_app.manifest import load_manifest
    from mammo_train.splits import read_splits

    run = Path(load_manifest(bundle).training["run"])
    rows = read_splits(run / "splits.csv")
    return [row.path for row in rows][:count]


class DaemonProcess:
    def __init__(self, python: str, root: Path, bundle: Path, runtime: str, settle: float = 0.3) -> None:
        self.python, self.root = python, root
        self.config = write_daemon_config(root, bundle, runtime, shipped_variant(bundle), settle)
        self.folders = {name: root / name for name in FOLDERS}
        self.process: subprocess.Popen[str] | None = None
        self.logs: list[str] = []

    def start(self, env: dict[str, str] | None = None) -> None:
        self.log_file = (self.root / f"daemon-{len(self.logs)}.log").open("w")
        self.process = subprocess.Popen(
            [self.python, "-m", "edge_app.cli", "run", "--config", str(self.config)],
            cwd=REPO,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self.log_file.close()
        self.logs.append(Path(self.log_file.name).read_text())
        return code

    def results(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.folders["results"].glob("*.json"))]

    def wait_for(self, condition: Callable[[], bool], timeout: float = 60, poll: float = 0.1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            assert self.process is not None and self.process.poll() is None, "the daemon died"
            time.sleep(poll)
        raise AssertionError("timed out waiting for the daemon")

    def wait_ready(self) -> None:
        """Until this start has logged its ``ready:`` line (the inbox is watched from then on)."""
        log = Path(self.log_file.name)
        self.wait_for(lambda: "ready:" in log.read_text())

    def entries(self) -> int:
        """Inputs accounted for: result JSONs plus quarantined error files."""
        return len(list(self.folders["results"].glob("*.json"))) + len(
            list(self.folders["quarantine"].glob("*.error.json"))
        )


@pytest.fixture
def daemon_factory(bundle: Path, tmp_path: Path) -> Iterator[Callable[[str, str], DaemonProcess]]:
    started: list[DaemonProcess] = []

    def make(variable: str, runtime: str) -> DaemonProcess:
        daemon = DaemonProcess(edge_python(variable), tmp_path / f"d{len(started)}", bundle, runtime)
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()


@pytest.mark.parametrize(("variable", "runtime"), RUNTIMES)
def test_drops_slow_writes_and_bad_files(
    daemon_factory: Callable[..., DaemonProcess], bundle: Path, variable: str, runtime: str
) -> None:
    from jsonschema import validate

    from edge_app.service.writer import result_schema

    daemon = daemon_factory(variable, runtime)
    scans = _scans(bundle, 4)
    daemon.start()
    daemon.wait_ready()  # the slow writer below must be watched while it writes
    shutil.copy(scans[0], daemon.folders["inbox"] / "first.png")
    (daemon.folders["inbox"] / "notes.txt").write_text("not a scan")
    # A scanner writing slowly in chunks under the final name: must not be taken half-written.
    data = scans[1].read_bytes()
    with (daemon.folders["inbox"] / "slow.png").open("wb") as handle:
        for start in range(0, len(data), len(data) // 5 + 1):
            handle.write(data[start : start + len(data) // 5 + 1])
            handle.flush()
            time.sleep(0.15)
    # A copy in progress under a temporary name, renamed when complete.
    partial = daemon.folders["inbox"] / "third.png.part"
    partial.write_bytes(scans[2].read_bytes())
    # A file dropped after the partial one is answered only once the partial one has held still as long: had the
    # daemon taken the partial file, its outcome would be among these.
    shutil.copy(scans[3], daemon.folders["inbox"] / "after.png")
    daemon.wait_for(lambda: daemon.entries() == 4)
    assert not [r for r in daemon.results() if r["input"] == "third.png.part"] and partial.is_file()
    assert not list(daemon.folders["quarantine"].glob("third*"))
    partial.rename(daemon.folders["inbox"] / "third.png")
    daemon.wait_for(lambda: daemon.entries() == 5)
    assert daemon.stop() == 0
    schema = result_schema()
    results = {r["input"]: r for r in daemon.results()}
    assert set(results) == {"first.png", "slow.png", "after.png", "third.png"}
    for result in results.values():
        validate(result, schema)
        assert result["model"]["runtime"].startswith(runtime)
        assert (daemon.folders["results"] / result["heatmap"]).is_file()
    assert results["slow.png"]["sha256"] == __import__("hashlib").sha256(data).hexdigest()
    assert sorted(p.name for p in daemon.folders["archive"].iterdir()) == [
        "after.png",
        "first.png",
        "slow.png",
        "third.png",
    ]
    error = json.loads((daemon.folders["quarantine"] / "notes.txt.error.json").read_text())
    assert error["exception"] == "UnsupportedFormatError" and error["stage"] == "decode"
    assert (daemon.folders["quarantine"] / "notes.txt").read_text() == "not a scan"  # kept, never deleted
    audit = [json.loads(line) for line in (daemon.folders["results"] / "results.jsonl").read_text().splitlines()]
    assert sorted(entry["status"] for entry in audit) == ["classified"] * 4 + ["rejected"]
    assert len((daemon.folders["results"] / "results.csv").read_text().splitlines()) == 6
    assert not any(daemon.folders["inbox"].iterdir())


def test_duplicates_collisions_links_and_no_patient_data_in_logs(
    daemon_factory: Callable[..., DaemonProcess], bundle: Path, tmp_path: Path, write_dicom: Callable[..., Path]
) -> None:
    daemon = daemon_factory("MAMMO_TEST_EDGE_PYTHON", "ai_edge_litert")
    scan = _scans(bundle, 1)[0]
    daemon.start()
    inbox = daemon.folders["inbox"]
    shutil.copy(scan, inbox / "scan.png")
    daemon.wait_for(lambda: daemon.entries() == 1)
    shutil.copy(scan, inbox / "scan.png")  # same name, same content
    daemon.wait_for(lambda: daemon.entries() == 2)
    (inbox / "link.png").symlink_to(scan)
    pixels = cv2.imread(str(scan), cv2.IMREAD_GRAYSCALE)
    write_dicom(
        tmp_path / "patient.dcm",
        pixels,
        extra={"PatientName": "DOE^JANE", "PatientID": "PID-424242", "StudyDate": "20240102"},
    )
    shutil.copy(tmp_path / "patient.dcm", inbox / "patient.dcm")
    daemon.wait_for(lambda: daemon.entries() == 4)
    assert daemon.stop() == 0
    results = {p.name: json.loads(p.read_text()) for p in daemon.folders["results"].glob("*.json")}
    assert set(results) == {"scan.json", "scan (2).json", "patient.json"}
    assert results["scan.json"]["duplicate_of"] is None
    assert results["scan (2).json"]["duplicate_of"] == "scan.json"
    assert results["scan (2).json"]["probability"] == results["scan.json"]["probability"]
    assert results["patient.json"]["probability"] == pytest.approx(results["scan.json"]["probability"], abs=1e-6)
    assert sorted(p.name for p in daemon.folders["archive"].iterdir()) == ["patient.dcm", "scan (2).png", "scan.png"]
    link = daemon.folders["quarantine"] / "link.png"
    assert link.is_symlink()  # the link itself was moved, its target never read
    assert "symbolic links are never followed" in (daemon.folders["quarantine"] / "link.png.error.json").read_text()
    log = daemon.logs[-1]
    for identifier in ("DOE^JANE", "DOE", "PID-424242", "20240102"):
        assert identifier not in log


def test_systemd_notifications_and_sigterm(
    daemon_factory: Callable[..., DaemonProcess], tmp_path: Path, bundle: Path
) -> None:
    address = str(tmp_path / "notify.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(address)
    receiver.settimeout(30)
    daemon = daemon_factory("MAMMO_TEST_EDGE_PYTHON", "ai_edge_litert")
    daemon.start({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"})
    messages: list[str] = []

    def receive_until(condition: Callable[[], bool], seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, f"not seen within {seconds} s; got {messages[-5:]}"
            messages.append(receiver.recv(4096).decode())

    receive_until(lambda: "READY=1" in messages)
    shutil.copy(_scans(bundle, 1)[0], daemon.folders["inbox"] / "a.png")
    receive_until(lambda: "STATUS=1 classified, 0 quarantined, 0 waiting" in messages)
    pings = messages.count("WATCHDOG=1")
    receive_until(lambda: messages.count("WATCHDOG=1") >= pings + 3)  # idle, the loop still pings
    assert daemon.stop(signal.SIGTERM) == 0
    receive_until(lambda: "STOPPING=1" in messages)
    receiver.close()


def test_sigkill_at_random_moments_loses_nothing(daemon_factory: Callable[..., DaemonProcess], bundle: Path) -> None:
    """100 files (some bad, some duplicates) handed in over 30 SIGKILLs, then one clean pass: exactly one outcome per
    input.

    Half the kills come at a random moment after the start (start-up and recovery included), half the moment a scan
    is seen in ``processing/`` after the daemon said ready: those land mid-scan however fast this host scans (at a
    random moment a fast host had emptied the inbox before most kills). A few files go in before each start, so
    there is always a scan to interrupt."""
    daemon = daemon_factory("MAMMO_TEST_EDGE_PYTHON", "ai_edge_litert")
    scans = _scans(bundle, 90)
    inbox = daemon.folders["inbox"]
    processing = daemon.folders["state"] / "processing"  # made at start-up, which a kill may precede
    names = [f"scan{index:03d}.png" for index in range(100)]
    rng = random.Random(7)
    mid_scan = 0
    kills = 30
    for kill in range(kills):
        for index in range(kill * len(names) // kills, (kill + 1) * len(names) // kills):
            if index % 10 == 9:
                (inbox / names[index]).write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # rejected
            else:
                shutil.copy(scans[index % len(scans)], inbox / names[index])
        daemon.start()
        if kill % 2:
            daemon.wait_ready()
            daemon.wait_for(lambda: processing.is_dir() and any(processing.iterdir()), poll=0.001)
        else:
            time.sleep(rng.uniform(0.2, 2.0))
        daemon.stop(signal.SIGKILL)
        mid_scan += processing.is_dir() and any(processing.iterdir())
    daemon.start()  # one clean pass finishes anything a last kill interrupted
    daemon.wait_ready()
    daemon.wait_for(lambda: daemon.entries() == 100 and not any((daemon.folders["state"] / "processing").iterdir()))
    assert daemon.stop() == 0
    results = daemon.results()
    quarantined = sorted(p.name for p in daemon.folders["quarantine"].glob("*.error.json"))
    assert len(results) == 90 and len(quarantined) == 10
    assert sorted(r["input"] for r in results) == sorted(n for i, n in enumerate(names) if i % 10 != 9)
    assert sorted(p.name for p in daemon.folders["archive"].iterdir()) == sorted(r["input"] for r in results)
    for folder in ("results", "archive", "quarantine"):
        assert not [p.name for p in daemon.folders[folder].iterdir() if p.name.startswith(".")], folder
    for result in results:  # no partial file under a final name
        assert (daemon.folders["results"] / result["heatmap"]).stat().st_size > 0
    audit = (daemon.folders["results"] / "results.jsonl").read_text().splitlines()
    assert len(audit) == 100 and len({json.loads(line)["id"] for line in audit}) == 100
    assert mid_scan >= kills // 4, f"only {mid_scan} of {kills} kills landed mid-scan"


def test_names_with_double_underscores_round_trip_and_once_writes_what_run_writes(
    daemon_factory: Callable[..., DaemonProcess], bundle: Path, tmp_path: Path
) -> None:
    """`scan__left.png` (flat and nested) is reported, archived and logged under exactly that name, and `once` on
    the same file writes the same result JSON as the daemon, apart from the id, the time and measured durations."""
    daemon = daemon_factory("MAMMO_TEST_EDGE_PYTHON", "ai_edge_litert")
    scan, other = _scans(bundle, 2)  # different content: neither result is a duplicate of the other
    daemon.start()
    inbox = daemon.folders["inbox"]
    (inbox / "nested").mkdir()
    shutil.copy(scan, inbox / "scan__left.png")
    daemon.wait_for(lambda: daemon.entries() == 1)  # first, so its result stem is scan__left, as once's will be
    shutil.copy(other, inbox / "nested" / "scan__left.png")
    daemon.wait_for(lambda: daemon.entries() == 2)
    assert daemon.stop() == 0
    assert sorted(r["input"] for r in daemon.results()) == ["nested/scan__left.png", "scan__left.png"]
    assert (daemon.folders["archive"] / "scan__left.png").is_file()
    assert (daemon.folders["archive"] / "nested" / "scan__left.png").is_file()
    audit = [json.loads(line) for line in (daemon.folders["results"] / "results.jsonl").read_text().splitlines()]
    assert sorted(entry["input"] for entry in audit) == ["nested/scan__left.png", "scan__left.png"]

    (tmp_path / "once-in").mkdir()
    shutil.copy(scan, tmp_path / "once-in" / "scan__left.png")
    python = edge_python("MAMMO_TEST_EDGE_PYTHON")
    command = [python, "-m", "edge_app.cli", "once", "--model", str(bundle), "--runtime", "ai_edge_litert"]
    command += ["--variant", shipped_variant(bundle)]
    command += ["--threads", "1", "--results", str(tmp_path / "once-out"), str(tmp_path / "once-in")]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr

    def comparable(path: Path) -> dict:
        document = json.loads(path.read_text())
        for varying in ("id", "created", "timings_ms"):
            assert varying in document
            del document[varying]
        return document

    by_input = {json.loads(p.read_text())["input"]: p for p in daemon.folders["results"].glob("*.json")}
    from_run = by_input["scan__left.png"]
    from_once = tmp_path / "once-out" / "scan__left.json"
    assert comparable(from_run) == comparable(from_once)
    run_overlay = from_run.with_name(from_run.name.replace(".json", ".gradcam.jpg"))
    assert run_overlay.read_bytes() == (tmp_path / "once-out" / "scan__left.gradcam.jpg").read_bytes()


def test_once_gives_the_same_answer_for_png_tiff_and_dicom(
    bundle: Path, tmp_path: Path, write_dicom: Callable[..., Path]
) -> None:
    import tifffile

    python = edge_python("MAMMO_TEST_EDGE_PYTHON")
    pixels = cv2.imread(str(_scans(bundle, 1)[0]), cv2.IMREAD_GRAYSCALE)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    cv2.imwrite(str(inputs / "a.png"), pixels)
    tifffile.imwrite(inputs / "b.tif", pixels.astype(np.uint16) * 257)  # the same pixels at 16 bits
    write_dicom(inputs / "c.dcm", pixels)
    out = tmp_path / "out"
    command = [python, "-m", "edge_app.cli", "once", "--model", str(bundle), "--variant", shipped_variant(bundle)]
    completed = subprocess.run(
        [*command, "--results", str(out), str(inputs)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "a.png" in completed.stdout and "not for clinical use" in completed.stdout
    results = [json.loads((out / f"{stem}.json").read_text()) for stem in ("a", "b", "c")]
    assert len({r["label"] for r in results}) == 1
    probabilities = [r["probability"] for r in results]
    assert max(probabilities) - min(probabilities) <= 1e-6
    assert all((out / f"{stem}.gradcam.jpg").is_file() for stem in ("a", "b", "c"))


def test_low_disk_space_pauses_and_says_why(daemon_factory: Callable[..., DaemonProcess], bundle: Path) -> None:
    daemon = daemon_factory("MAMMO_TEST_EDGE_PYTHON", "ai_edge_litert")
    daemon.start({"MAMMO_EDGE_INGEST_MIN_FREE_MB": str(10**12)})  # more than any disk has
    daemon.wait_ready()
    shutil.copy(_scans(bundle, 1)[0], daemon.folders["inbox"] / "waiting.png")
    daemon.wait_for(lambda: "not taking new scans" in Path(daemon.log_file.name).read_text())
    assert daemon.stop() == 0
    assert (daemon.folders["inbox"] / "waiting.png").is_file()  # left where it was, nothing lost
    assert daemon.entries() == 0
    daemon.start()  # space "returns": the scan is taken
    daemon.wait_for(lambda: daemon.entries() == 1)
    assert daemon.stop() == 0
