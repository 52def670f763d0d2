"""Debian's Orthanc as a clinic's PACS, for the PACS benchmark, its walk-through and the tests: started on free local
ports with its own storage folder, configured the way a clinic routes its mammograms to the device (a modality entry
and the auto-routing script the field guide ships, `ROUTING`, used as it is), read back through its REST API. With
`Web` settings it also serves DICOMweb (Debian's orthanc-dicomweb plugin) with user accounts."""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mammo_bench.ports import free_port, wait_for_port

ORTHANC_AE = "ORTHANC"
DEVICE = "mammo-edge"  # the device's name in Orthanc's DicomModalities, as the shipped routing script names it
DEVICE_AE = "MAMMO_EDGE"  # the device's default [dicom] ae_title, as the routing script names it
ROUTING = Path(__file__).resolve().parents[2] / "deploy" / "orthanc" / "route-mammograms.lua"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


@dataclass(frozen=True)
class Web:
    """How Orthanc serves HTTP: its DICOMweb plugin, and these accounts (none: open to anyone)."""

    dicomweb: bool = False
    users: dict[str, str] = field(default_factory=dict)


class RunningOrthanc:
    """One Orthanc; its ports and storage stay the same across `kill` and `start` (a PACS that crashed, back)."""

    def __init__(self, root: Path, device_port: int, web: Web = Web()) -> None:
        self.root = root
        self.web = web
        self.dicom_port, self.http_port = free_port(), free_port()
        self.config = orthanc_config(root, self.dicom_port, self.http_port, device_port, web)
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.dicomweb_url = f"{self.url}/dicom-web"
        self._headers: dict[str, str] = {}
        if web.users:
            user, password = next(iter(web.users.items()))
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"

    def start(self) -> None:
        with (self.root / "orthanc.log").open("a") as log:
            self.process = subprocess.Popen(["Orthanc", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.http_port, timeout=60, process=self.process)
        wait_for_port(self.dicom_port, timeout=60, process=self.process)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                self.get("/system")
                return
            time.sleep(0.1)
        raise AssertionError("Orthanc's REST API did not answer within 30 s")

    def kill(self) -> None:
        """SIGKILL: no shutdown of its own."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=60)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)

    def raw(self, path: str) -> bytes:
        request = urllib.request.Request(f"{self.url}{path}", headers=self._headers)
        with urllib.request.urlopen(request, timeout=30) as answer:
            data: bytes = answer.read()
        return data

    def post(self, path: str, body: str) -> Any:
        request = urllib.request.Request(f"{self.url}{path}", body.encode(), headers=self._headers, method="POST")
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read())

    def get(self, path: str) -> Any:
        return json.loads(self.raw(path))

    def studies(self) -> list[dict[str, Any]]:
        return [self.get(f"/studies/{study}") for study in self.get("/studies")]

    def series_of(self, study: dict[str, Any]) -> list[dict[str, Any]]:
        return [self.get(f"/series/{series}") for series in study["Series"]]


def orthanc_config(root: Path, dicom_port: int, http_port: int, device_port: int, web: Web = Web()) -> Path:
    """Orthanc's configuration: local ports, its storage under `root`, the device as a modality and the routing;
    DICOMweb and accounts as `web` says."""
    root.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "Name": "mammo-edge test PACS",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "storage"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": ORTHANC_AE,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": bool(web.users),
        "RegisteredUsers": web.users,
        "HttpServerEnabled": True,
        "DicomModalities": {DEVICE: [DEVICE_AE, "127.0.0.1", device_port]},
        "LuaScripts": [str(ROUTING)],
        "Plugins": [str(DICOMWEB_PLUGIN)] if web.dicomweb else [],
        "DicomWeb": {"Enable": web.dicomweb, "Root": "/dicom-web/"},
        "StableAge": 1,
    }
    path = root / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    return path


@contextlib.contextmanager
def orthanc(root: Path, device_port: int, web: Web = Web()) -> Iterator[RunningOrthanc]:
    """Orthanc serving until the block ends (its log in ``root/orthanc.log``), routing mammograms to `device_port`."""
    server = RunningOrthanc(root, device_port, web)
    try:
        server.start()
        yield server
    finally:
        server.stop()
