"""``mammo-bench pacs``: a clinic's whole path, timed: a modality sends a study of 4 full-field views to Orthanc
(dcmtk's ``storescu``), Orthanc routes the mammograms to the device (the field guide's Lua rule), the device answers
(listener, daemon and forwarder, each its own ``mammo-edge`` process, as systemd runs them) and its forwarder stores
the SR and SC of each film into Orthanc, by C-STORE or STOW-RS.

Studies go one after the other; a study's time runs from the modality's send to the moment Orthanc holds every
answer. Each view's steps are read from what each side shows, polled every 20 ms while the modality sends: the film
in the device's inbox (arrived), its result written (answered). The device's share is the part of a study's time from
its first film arriving to its last answered: the settle and region-file waits of ``[ingest]`` included (recorded
with the figures), the model's own work given apart (``compute_s``, from each result's ``timings_ms``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.uid import generate_uid

from edge_app.config import IngestSection
from edge_app.errors import MeasurementError
from edge_app.manifest import load_manifest
from mammo_bench.orthanc import DEVICE_AE, ORTHANC_AE, RunningOrthanc, Web
from mammo_bench.ports import free_port
from mammo_bench.regions_bench import film_with_regions
from mammo_bench.services import POLL_SECONDS, WAIT_SECONDS, device_services, write_device_config

MODALITY_AE = "MODALITY"
VIEWS = (("R", "CC", ["L", "F"]), ("L", "CC", ["R", "F"]), ("R", "MLO", ["A", "FR"]), ("L", "MLO", ["P", "FL"]))
ACCOUNT = ("mammo-edge", "bench-password")  # the device's Orthanc account for DICOMweb
PROTOCOLS = ("dimse", "dicomweb")


@dataclass(frozen=True)
class Study:
    uid: str
    views: dict[str, Path]  # SOP Instance UID -> the view's file as the modality sends it


def _studies(folder: Path, count: int, rows: int, columns: int, patch: int, bundle: Path) -> list[Study]:
    """`count` screening studies of 4 synthetic full-field views (one mass each), one patient per study."""
    rule = load_manifest(bundle, verify_files=False).scope.crop_rule
    folder.mkdir(parents=True)
    studies = []
    for number in range(count):
        study_uid, series_uid = generate_uid(), generate_uid()
        views: dict[str, Path] = {}
        for index, (laterality, view, orientation) in enumerate(VIEWS):
            instance = str(generate_uid())
            film, _, _ = film_with_regions(
                1,
                rows,
                columns,
                patch,
                rule,
                seed=4 * number + index,
                PatientID=f"BENCH-{number + 1}",
                PatientName=f"BENCH^STUDY{number + 1}",
                StudyInstanceUID=study_uid,
                SeriesInstanceUID=series_uid,
                SOPInstanceUID=instance,
                InstanceNumber=index + 1,
                ImageLaterality=laterality,
                ViewPosition=view,
                PatientOrientation=orientation,
            )
            path = folder / f"{number:03d}-{laterality}{view}.dcm"
            path.write_bytes(film)
            views[instance] = path
        studies.append(Study(study_uid, views))
    return studies


def _device_config(
    root: Path,
    bundle: Path,
    variant: str,
    threads: int,
    ingest: IngestSection,
    pacs: RunningOrthanc,
    protocol: str,
    port: int,
) -> Path:
    """The device's config: its listener on `port` for Orthanc, its forwarder back to `pacs` by `protocol`."""
    if protocol == "dicomweb":
        credentials = root / "pacs-credentials.toml"
        root.mkdir(parents=True)
        credentials.write_text(f'user = "{ACCOUNT[0]}"\npassword = "{ACCOUNT[1]}"\n')
        credentials.chmod(0o600)
        forward = f'protocol = "dicomweb"\nurl = "{pacs.dicomweb_url}"\nauth_file = "{credentials}"\n'
    else:
        forward = f'ae_title = "{ORTHANC_AE}"\nhost = "127.0.0.1"\nport = {pacs.dicom_port}\n'
    dicom = (
        f'[dicom]\nenabled = true\nae_title = "{DEVICE_AE}"\nport = {port}\nbind_address = "127.0.0.1"\n'
        f'allowed_ae_titles = ["{ORTHANC_AE}"]\n\n[dicom.forward]\n{forward}retry_seconds = 0.5\n'
        "retry_max_seconds = 2.0\n"
    )
    return write_device_config(root, bundle, variant, threads, ingest, dicom)


def _send(pacs: RunningOrthanc, files: list[Path]) -> subprocess.Popen[str]:
    """The modality's send, under way: ``storescu`` of the study's files to Orthanc, in one association."""
    command = ["storescu", "-aet", MODALITY_AE, "-aec", ORTHANC_AE, "127.0.0.1", str(pacs.dicom_port)]
    return subprocess.Popen([*command, *map(str, files)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stored(pacs: RunningOrthanc, study_uid: str) -> int:
    """How many instances Orthanc holds in the study (0 before it knows the study)."""
    found = pacs.post("/tools/lookup", study_uid)
    return len(pacs.get(f"/studies/{found[0]['ID']}/instances")) if found else 0


def _time_study(pacs: RunningOrthanc, device: Path, study: Study) -> dict[str, Any]:
    """One study from the modality's send until Orthanc holds its films and both answers of each."""
    arrived: dict[str, float] = {}
    answered: dict[str, float] = {}
    expected = 3 * len(study.views)
    started = time.perf_counter()
    sender = _send(pacs, list(study.views.values()))
    sent: float | None = None
    deadline = started + WAIT_SECONDS
    while True:
        now = time.perf_counter()
        if sent is None and sender.poll() is not None:
            sent = now
            if sender.returncode != 0:
                output = sender.stdout.read() if sender.stdout else ""
                raise MeasurementError(f"storescu could not send the study to Orthanc: {output.strip()}")
        for uid in study.views:
            if uid not in arrived and (device / "inbox" / f"{uid}.dcm").exists():
                arrived[uid] = now
            if uid not in answered and (device / "results" / f"{uid}.json").exists():
                answered[uid] = now
                arrived.setdefault(uid, now)
        if sent is not None and len(answered) == len(study.views) and _stored(pacs, study.uid) == expected:
            break
        if now > deadline:
            raise MeasurementError(f"the study's answers did not reach Orthanc within {WAIT_SECONDS:.0f} s")
        time.sleep(POLL_SECONDS)
    stored = time.perf_counter()
    results = [json.loads((device / "results" / f"{uid}.json").read_text()) for uid in study.views]
    compute = sum(sum(result["timings_ms"].values()) for result in results) / 1000
    device_span = max(answered.values()) - min(arrived.values())
    return {
        "seconds": stored - started,
        "modality_to_pacs_s": (sent or stored) - started,
        "to_device_s": min(arrived.values()) - started,
        "device_s": device_span,
        "compute_s": compute,
        "forward_s": stored - max(answered.values()),
        "device_share": device_span / (stored - started),
        "statuses": sorted(result["status"] for result in results),
    }


def _series(pacs: RunningOrthanc, study_uid: str) -> dict[str, int]:
    """The study's instances in Orthanc by modality (MG films, SR reports, OT captures)."""
    (found,) = pacs.post("/tools/lookup", study_uid)
    counts: dict[str, int] = {}
    for series in pacs.get(f"/studies/{found['ID']}/series"):
        modality = series["MainDicomTags"]["Modality"]
        counts[modality] = counts.get(modality, 0) + len(series["Instances"])
    return counts


def _explorer_screenshot(pacs: RunningOrthanc, study_uid: str, out: Path) -> None:
    """Orthanc Explorer's page of the study, in Debian's Chromium through Playwright."""
    from playwright.sync_api import HttpCredentials, sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise MeasurementError("--screenshot needs Chromium (Debian's `chromium` package)")
    (found,) = pacs.post("/tools/lookup", study_uid)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        login = HttpCredentials(username=ACCOUNT[0], password=ACCOUNT[1]) if pacs.web.users else None
        page = browser.new_context(viewport={"width": 1100, "height": 1000}, http_credentials=login).new_page()
        page.goto(f"{pacs.url}/app/explorer.html#study?uuid={found['ID']}")
        page.wait_for_selector("#study-info li", timeout=60_000)
        page.wait_for_timeout(500)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        browser.close()


def measure_pacs(
    bundle: Path,
    studies: int,
    protocol: str,
    root: Path,
    rows: int,
    columns: int,
    variant: str,
    threads: int,
    ingest: IngestSection,
    screenshot: Path | None = None,
) -> dict[str, Any]:
    """Time `studies` studies through Orthanc and the device (every file under `root`); figures per study."""
    if shutil.which("Orthanc") is None or shutil.which("storescu") is None:
        raise MeasurementError("mammo-bench pacs needs Debian's orthanc and dcmtk (`make system-tools`)")
    manifest = load_manifest(bundle, verify_files=False)
    films = _studies(root / "modality", studies, rows, columns, manifest.scope.patch_side_px[1], bundle)
    device_port = free_port()
    web = Web(dicomweb=True, users=dict([ACCOUNT])) if protocol == "dicomweb" else Web()
    pacs = RunningOrthanc(root / "orthanc", device_port, web)
    config = _device_config(root / "device", bundle, variant, threads, ingest, pacs, protocol, device_port)
    pacs.start()
    try:
        with device_services(config, root / "logs", ("run", "dicom-listen", "dicom-forward")):
            rows_out = [_time_study(pacs, root / "device", study) for study in films]
            series = [_series(pacs, study.uid) for study in films]
        if screenshot is not None:
            _explorer_screenshot(pacs, films[-1].uid, screenshot)
    finally:
        pacs.stop()
    views = len(VIEWS)
    if any(counts != {"MG": views, "SR": views, "OT": views} for counts in series):
        raise MeasurementError(f"a study in Orthanc does not hold its films and their answers: {series}")
    per_study = sorted(row["seconds"] for row in rows_out)
    median = per_study[len(per_study) // 2]
    return {
        "protocol": protocol,
        "studies": studies,
        "views_per_study": views,
        "film": {"rows": rows, "columns": columns, "bytes": films[0].views[next(iter(films[0].views))].stat().st_size},
        "device": {
            "model": f"{manifest.name} {manifest.version}",
            "variant": variant,
            "threads": threads,
            "settle_seconds": ingest.settle_seconds,
            "sidecar_wait": ingest.sidecar_wait,
        },
        "orthanc_series": series,
        "per_study": rows_out,
        "seconds_per_study_p50": median,
        "seconds_per_view_p50": median / views,
        "device_share_p50": sorted(row["device_share"] for row in rows_out)[len(rows_out) // 2],
        "compute_share_p50": sorted(row["compute_s"] / row["seconds"] for row in rows_out)[len(rows_out) // 2],
    }
