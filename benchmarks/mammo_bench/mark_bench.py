"""``mammo-bench mark``: what a reader waits for after submitting regions in the marking view, against one analysis
of the same film with the same region, in one run; and how long the marking view takes to load the film in Chromium.

The device runs as it does in a clinic: the daemon and the web app, each its own process over a temporary folder, a
16-bit full-field DICOM film (``--rows`` x ``--columns``, one synthetic mass) answered ``needs_roi`` first. Each
round then times, one after the other, (a) the analyse and write stages on the film and its region in this process,
the DICOM report and capture included (`analyse_and_write`: what one analysis of the film dropped with its region
costs the device) and (b) a program's ``POST /api/scans/{id}/regions`` with the same
region until ``GET /api/scans/{new id}`` shows the written result (polled every 20 ms): the daemon's pick-up, the
claim, the same analysis, the writing of the result, SR and SC. The ratio of the medians is the web path's cost.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import time
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

from edge_app.config import IngestSection, resolve_config
from edge_app.dicom.answers import DicomAnswerWriter
from edge_app.errors import MeasurementError
from edge_app.model import EdgeModel
from edge_app.scope import ScopeLimits
from edge_app.service.analyse import ModelAnalyser, Sidecar
from edge_app.service.writer import ResultWriter
from edge_app.web.accounts import AccountStore
from edge_app.web.app import web_folder
from mammo_bench.ports import free_port
from mammo_bench.regions_bench import analyse_and_write, film_with_regions
from mammo_bench.services import POLL_SECONDS, device_services, wait_until, write_device_config
from mammo_bench.stats import summarise


def _api(url: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        return int(response.status), json.loads(response.read())


def _result(url: str, token: str) -> Any:
    return _api(url, token)[1].get("result")


def _chromium_load_seconds(base: str, scan_id: str, user: str, password: str, repeats: int) -> list[float] | None:
    """From navigation to the film drawn on the marking view's canvas, logged in; None without Playwright or
    Chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if chromium is None:
        return None
    timings = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(f"{base}/login")
        page.fill("#user", user)
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/scans")
        for _ in range(repeats):
            started = time.perf_counter()
            page.goto(f"{base}/scans/{scan_id}")
            page.wait_for_selector("body[data-loaded=true]", timeout=120_000)
            timings.append(time.perf_counter() - started)
        browser.close()
    return timings


def measure_mark(bundle: Path, variant: str, threads: int, rounds: int, rows: int, columns: int) -> dict[str, Any]:
    model = EdgeModel.load(bundle, variant, "auto", threads)
    manifest = model.manifest
    analyser = ModelAnalyser(model, 10**8, ScopeLimits.resolve(manifest.scope))
    film, roi, _ = film_with_regions(1, rows, columns, manifest.scope.patch_side_px[1], manifest.scope.crop_rule)
    marks = json.loads(roi)
    password = secrets.token_urlsafe(18)
    with tempfile.TemporaryDirectory(prefix="mammo-bench-mark-") as folder:
        root = Path(folder)
        port = free_port()
        ingest = IngestSection(settle_seconds=0.2, sidecar_wait=0.0, rescan_seconds=1.0)
        web_section = f'[web]\nenabled = true\nbind_address = "127.0.0.1"\nport = {port}\n'
        config_path = write_device_config(root / "device", bundle, variant, threads, ingest, web_section)
        config = resolve_config(config_path, environ={})
        accounts = AccountStore(web_folder(config) / "accounts.sqlite3")
        token = accounts.add_token("mammo-bench")
        accounts.add_user("bench-reader", password)
        accounts.close()
        logs = root / "logs"
        base = f"http://127.0.0.1:{port}"
        alone = root / "alone"
        writer = ResultWriter(alone, analyser.identity, sinks=(DicomAnswerWriter(alone, analyser.identity),))
        source = root / "film.dcm"
        source.write_bytes(film)
        with device_services(config_path, logs, ("run", "serve")):
            (config.paths.inbox / "film.dcm").write_bytes(film)
            needs_roi = f"{base}/api/scans?status=needs_roi"
            listed = wait_until(lambda: _api(needs_roi, token)[1]["scans"], "the film's answer")
            film_id = listed[0]["id"]
            warm = Sidecar("film.roi.json", "roi", roi)
            analyse_and_write(analyser, writer, film, "film.dcm", warm, 1, source)  # warm-up: first touches, caches
            alone_ms, web_ms = [], []
            for _ in range(rounds):
                sidecar = Sidecar("film.roi.json", "roi", roi)
                alone_ms.append(analyse_and_write(analyser, writer, film, "film.dcm", sidecar, 1, source))
                started = time.perf_counter()
                status, answer = _api(f"{base}/api/scans/{film_id}/regions", token, marks)
                if status != 202:
                    raise MeasurementError(f"the submission was answered {status}: {answer}")
                answered = f"{base}/api/scans/{answer['id']}"
                wait_until(partial(_result, answered, token), "the answer")
                web_ms.append((time.perf_counter() - started) * 1000)
            loads = _chromium_load_seconds(base, film_id, "bench-reader", password, max(2, rounds // 2))
    alone_stats, web = summarise(alone_ms), summarise(web_ms)
    return {
        "model": model.identity.stamp(),
        "film": {"rows": rows, "columns": columns, "bytes": len(film)},
        "rounds": rounds,
        "analysis_ms": alone_stats.to_dict(),
        "submit_to_answer_ms": web.to_dict(),
        "ratio_p50": round(web.p50_ms / alone_stats.p50_ms, 3),
        "poll_seconds": POLL_SECONDS,
        "marking_view_load_s": None if loads is None else summarise([1000 * s for s in loads]).to_dict(),
    }
