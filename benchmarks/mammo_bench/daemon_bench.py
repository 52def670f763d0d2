"""``mammo-bench daemon``: the real daemon on temporary folders, fed N scans, timed from the outside.

Start-up is process start to ``READY=1``, received on a notify socket exactly as systemd would. Scans are written
as hidden ``.part`` files and renamed into the inbox (what a well-behaved sender does); drop-to-result latency is a
result JSON's modification time minus its rename time, so it includes the daemon's settle time (reported) and, in a
burst (``interval`` 0), the queue. Two figures set the daemon against the model inside it, both against the
invoke time it recorded in the same run: ``busy_ms_per_file``, the time between the burst's first and last results
over the files between them (what each file costs once the daemon is working: the burst's one settle wait is not
in it), and the drop-to-result latency of single files dropped into an idle daemon (``single_drop_to_result``),
whose budget is the settle time plus 1.2 invokes. The scans are patches sent without region files, so the daemon
is told not to wait for any (``--sidecar-wait 0``; a clinic's default waits ``[ingest] sidecar_wait`` for one).
Peak RSS is the daemon's ``VmHWM`` read from ``/proc`` before it is stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_app.errors import MeasurementError
from mammo_bench.machine import vm_hwm_mb, vm_rss_mb
from mammo_bench.progress import progress
from mammo_bench.stats import summarise


def _drain(notifications: socket.socket, stop: threading.Event) -> None:
    """Keep reading the notify socket after READY, as systemd does (the daemon's STATUS lines)."""
    while not stop.is_set():
        try:
            notifications.recv(4096)
        except (TimeoutError, OSError):
            continue


def _stop(daemon: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as systemd stops it; a daemon that does not stop within 60 s is killed and reported."""
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=60)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
        raise MeasurementError("the daemon did not stop within 60 s of SIGTERM (killed)") from None


def _wait_ready(notifications: socket.socket, daemon: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise MeasurementError(f"the daemon exited with code {daemon.returncode} before READY")
        try:
            if b"READY=1" in notifications.recv(4096):
                return
        except TimeoutError:
            continue
    raise MeasurementError(f"the daemon sent no READY=1 within {timeout:.0f} s")


@dataclass
class DaemonSession:
    """A running `mammo-edge run` on temporary folders, READY, with its notify socket drained as systemd would."""

    process: subprocess.Popen[bytes]
    folders: dict[str, Path]
    ready_s: float

    def stop(self) -> None:
        """SIGTERM once (the daemon settles what it holds); a second call finds it stopped."""
        if self.process.poll() is None:
            _stop(self.process)


@contextmanager
def running_daemon(
    bundle: Path, variant: str, threads: int, settle_seconds: float, timeout: float
) -> Iterator[DaemonSession]:
    """Start the daemon, wait for READY=1, yield it; on the way out stop it with SIGTERM (an error kills it and names
    the daemon's last log line)."""
    with tempfile.TemporaryDirectory(prefix="mammo-bench-daemon-") as temporary:
        root = Path(temporary)
        folders = {name: root / name for name in ("inbox", "results", "archive", "quarantine", "state")}
        for folder in folders.values():
            folder.mkdir()
        notify_path = root / "notify.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notifications:
            notifications.bind(str(notify_path))
            notifications.settimeout(0.2)
            command = [sys.executable, "-m", "edge_app.cli", "run", "--config", str(root / "none.toml")]
            (root / "none.toml").write_text("")  # an empty file: defaults, never the machine's /etc config
            command += ["--bundle", str(bundle), "--variant", variant, "--threads", str(threads)]
            command += [
                "--settle-seconds",
                str(settle_seconds),
                "--sidecar-wait",
                "0",
            ]  # patches: no regions to wait for
            for name, folder in folders.items():
                command += [f"--{name}", str(folder)]
            environment = {key: value for key, value in os.environ.items() if not key.startswith("MAMMO_EDGE_")}
            environment["NOTIFY_SOCKET"] = str(notify_path)
            log = root / "daemon.log"
            started = time.monotonic()
            with log.open("wb") as stderr:
                daemon = subprocess.Popen(command, env=environment, stderr=stderr)
            draining = threading.Event()
            try:
                _wait_ready(notifications, daemon, timeout)
                session = DaemonSession(daemon, folders, time.monotonic() - started)
                threading.Thread(target=_drain, args=(notifications, draining), daemon=True).start()
                yield session
                session.stop()
            except MeasurementError as exc:
                if daemon.poll() is None:
                    daemon.kill()
                    daemon.wait()
                last = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no log)"]
                raise MeasurementError(f"{exc}; daemon log: {last[0]}") from exc
            finally:
                draining.set()


def measure_daemon(
    bundle: Path,
    scans: list[Path],
    files: int,
    variant: str,
    threads: int,
    settle_seconds: float = 0.2,
    interval: float = 0.0,
    singles: int = 5,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Run `mammo-edge run` on `files` drops (cycling through `scans`), then `singles` drops one at a time (each
    result awaited, then a pause of twice the settle time: an idle daemon), and return its figures."""
    with running_daemon(bundle, variant, threads, settle_seconds, timeout) as session:
        dropped = _drop(scans, files, session.folders["inbox"], interval)
        latencies = _collect(session.folders["results"], dropped, session.process, timeout)
        alone = []
        for index in range(files, files + singles):
            time.sleep(2 * settle_seconds + 0.1)
            single = _drop(scans, 1, session.folders["inbox"], 0.0, first=index)
            alone += _collect(session.folders["results"], single, session.process, timeout)
        peak = vm_hwm_mb(session.process.pid)
        inside = [_invoke_ms(session.folders["results"] / f"{stem}.json") for stem in dropped]
    first_drop = min(dropped.values())
    finished = sorted(dropped[stem] + latency / 1000 for stem, latency in zip(dropped, latencies, strict=True))
    invoke = summarise(inside).to_dict()
    figures: dict[str, Any] = {
        "files": files,
        "variant": variant,
        "threads": threads,
        "settle_seconds": settle_seconds,
        "interval_seconds": interval,
        "startup_to_ready_s": round(session.ready_s, 3),
        "files_per_s": round(files / (finished[-1] - first_drop), 3),
        "wall_ms_per_file": round((finished[-1] - first_drop) * 1000 / files, 2),
        "drop_to_result": summarise(latencies).to_dict(),
        "invoke_in_daemon": invoke,
        "peak_rss_mb": peak,
        "exit_code": session.process.returncode,
    }
    if files > 1:
        busy = (finished[-1] - finished[0]) * 1000 / (files - 1)
        figures["busy_ms_per_file"] = round(busy, 2)
        figures["busy_per_file_over_invoke"] = round(busy / invoke["p50_ms"], 3)
    if alone:
        budget = 1000 * settle_seconds + 1.2 * invoke["p50_ms"]
        single = summarise(alone).to_dict()
        figures["single_drop_to_result"] = single
        figures["single_budget_ms"] = round(budget, 2)
        figures["single_over_budget"] = round(single["p50_ms"] / budget, 3)
    return figures


def measure_memory_growth(
    bundle: Path,
    scans: list[Path],
    checkpoints: tuple[int, ...],
    variant: str,
    threads: int,
    batch: int = 200,
    timeout: float = 3600.0,
) -> dict[str, Any]:
    """Resident memory of one daemon after each checkpoint's number of processed scans (dropped `batch` at a time,
    each batch finished before the next): flat memory over a long run, measured in one run."""
    rss: dict[int, float | None] = {}
    with running_daemon(bundle, variant, threads, 0.0, timeout) as session:
        done = 0
        for target in sorted(checkpoints):
            while done < target:
                count = min(batch, target - done)
                dropped = _drop(scans, count, session.folders["inbox"], 0.0, first=done)
                _collect(session.folders["results"], dropped, session.process, timeout)
                done += count
            rss[target] = vm_rss_mb(session.process.pid)
        session.stop()  # a scan is archived just after its result is written: count once the daemon has settled all
        archived = sum(1 for _ in session.folders["archive"].iterdir())
    first, last = rss[min(checkpoints)], rss[max(checkpoints)]
    growth = None if first is None or last is None else round(last - first, 1)
    return {
        "variant": variant,
        "threads": threads,
        "archived": archived,
        "rss_mb_after": {str(count): value for count, value in sorted(rss.items())},
        "growth_mb": growth,
        "exit_code": session.process.returncode,
    }


def _drop(scans: list[Path], files: int, inbox: Path, interval: float, first: int = 0) -> dict[str, float]:
    """Copy, then rename into the inbox; returns result stem -> rename time (epoch seconds)."""
    dropped = {}
    for index in progress(range(first, first + files), files, "drops"):
        source = scans[index % len(scans)]
        name = f"drop{index:05d}{source.suffix.lower()}"
        hidden = inbox / f".{name}.part"
        shutil.copyfile(source, hidden)
        os.replace(hidden, inbox / name)
        dropped[Path(name).stem] = time.time()
        if interval:
            time.sleep(interval)
    return dropped


def _collect(results: Path, dropped: dict[str, float], daemon: subprocess.Popen[bytes], timeout: float) -> list[float]:
    """Wait for every result; drop-to-result milliseconds per file, in `dropped`'s order. A result's time is its
    file's, so the folder is looked at only every 0.1 s, by name (a poll that stats hundreds of files 50 times a
    second takes a core's share from the daemon it measures); only a new result is stat'ed."""
    deadline = time.monotonic() + timeout
    latencies: dict[str, float] = {}
    while len(latencies) < len(dropped):
        if daemon.poll() is not None:
            raise MeasurementError(f"the daemon exited with code {daemon.returncode} while scans were waiting")
        if time.monotonic() > deadline:
            raise MeasurementError(f"only {len(latencies)} of {len(dropped)} results within {timeout:.0f} s")
        for name in os.listdir(results):
            stem, suffix = os.path.splitext(name)
            if suffix == ".json" and stem in dropped and stem not in latencies:
                latencies[stem] = (os.stat(results / name).st_mtime - dropped[stem]) * 1000
        time.sleep(0.1)
    return [latencies[stem] for stem in dropped]


def _invoke_ms(result: Path) -> float:
    return float(json.loads(result.read_text())["timings_ms"]["invoke_ms"])
