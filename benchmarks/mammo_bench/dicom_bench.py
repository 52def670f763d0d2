"""What receiving over DICOM costs: N mammograms sent by C-STORE in one association to the real listener, against
the same files dropped into an inbox the careful way (temporary name, fsync, rename: what the listener does too).

The sender is dcmtk's ``storescu`` when it is installed (a separate C++ process, as a modality would be), else
pynetdicom in this process. Rounds alternate between the two ways so that the machine's state is shared; the figure
that matters is the ratio measured in one run.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.uid import generate_uid

from edge_app.config import Config, DicomSection, PathsSection
from edge_app.dicom.listen import StorageListener
from edge_app.dicom.sample import encode, mammogram
from edge_app.fsutil import atomic_write
from mammo_bench.ports import free_port

SENDER_AE = "BENCH"


def _sources(folder: Path, count: int, rows: int, columns: int) -> list[Path]:
    rng = np.random.default_rng(0)
    study = generate_uid()
    paths = []
    for index in range(count):
        pixels = rng.integers(0, 4096, (rows, columns)).astype(np.uint16)
        path = folder / f"{index:04d}.dcm"
        path.write_bytes(encode(mammogram(pixels, StudyInstanceUID=study, InstanceNumber=index + 1)))
        paths.append(path)
    return paths


def _send(port: int, files: list[Path]) -> str:
    """Send every file in one association; returns the sender's name."""
    if shutil.which("storescu"):
        command = ["storescu", "-aet", SENDER_AE, "-aec", "MAMMO_EDGE", "-R", "127.0.0.1", str(port)]
        subprocess.run([*command, *map(str, files)], check=True, capture_output=True, timeout=3600)
        return "storescu"
    from pynetdicom import AE

    ae = AE(ae_title=SENDER_AE)
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.1.2")
    association = ae.associate("127.0.0.1", port, ae_title="MAMMO_EDGE")
    try:
        for path in files:
            status = association.send_c_store(path)
            if getattr(status, "Status", None) != 0:
                raise RuntimeError(f"{path.name} was not stored")
    finally:
        association.release()
    return "pynetdicom"


def _listener_round(root: Path, files: list[Path]) -> tuple[float, str]:
    config = Config(paths=PathsSection(inbox=root / "inbox", state=root / "state"))
    dicom = replace(
        DicomSection(), enabled=True, port=free_port(), bind_address="127.0.0.1", allowed_ae_titles=(SENDER_AE,)
    )
    listener = StorageListener(dicom, config.paths.inbox, config.paths.state / "journal.sqlite3")
    stopping = threading.Event()
    thread = threading.Thread(target=listener.serve, args=(stopping,))
    thread.start()
    try:
        time.sleep(0.5)  # the port opens
        started = time.perf_counter()
        sender = _send(dicom.port, files)
        elapsed = time.perf_counter() - started
    finally:
        stopping.set()
        thread.join()
    stored = len(list(config.paths.inbox.glob("*.dcm")))
    if stored != len(files):
        raise RuntimeError(f"the listener stored {stored} of {len(files)} instances")
    return elapsed, sender


def _drop_round(root: Path, files: list[Path]) -> float:
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    started = time.perf_counter()
    for path in files:
        atomic_write(inbox / path.name, path.read_bytes())
    return time.perf_counter() - started


def measure_dicom_intake(count: int, rows: int, columns: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mammo-bench-dicom-") as folder:
        root = Path(folder)
        (root / "sources").mkdir()
        files = _sources(root / "sources", count, rows, columns)
        megabytes = sum(path.stat().st_size for path in files) / 1e6
        listener_s, drop_s, sender = [], [], ""
        for index in range(repeats):
            elapsed, sender = _listener_round(root / f"listen-{index}", files)
            listener_s.append(elapsed)
            drop_s.append(_drop_round(root / f"drop-{index}", files))
    listen, drop = statistics.median(listener_s), statistics.median(drop_s)
    return {
        "instances": count,
        "rows": rows,
        "columns": columns,
        "megabytes": round(megabytes, 1),
        "sender": sender,
        "rounds": repeats,
        "listener_seconds": [round(value, 6) for value in listener_s],
        "drop_seconds": [round(value, 6) for value in drop_s],
        "listener_images_per_s": round(count / listen, 1),
        "listener_mb_per_s": round(megabytes / listen, 1),
        "drop_images_per_s": round(count / drop, 1),
        "listener_ms_per_image": round(1000 * listen / count, 2),
        "drop_ms_per_image": round(1000 * drop / count, 2),
        "overhead_ratio": round(listen / drop, 2),
    }
