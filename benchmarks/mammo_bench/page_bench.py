"""What the results page costs in a folder that has been used for months: N - 1 results written by the real writer
(synthetic answers with a full-size overlay, no model), the pages caught up (as on a device upgraded with that many
results: each update writes a few older pages), then one more result and the time to regenerate the page (with N a
multiple of the page size the newest page is full: the most work), and (when Playwright and Chromium are installed)
the time Chromium takes to show it with every image drawn."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_app.model import ModelIdentity
from edge_app.regions import Box
from edge_app.report.page import INDEX, PAGE_SIZE, PAGES, PageContext, ResultsPage
from edge_app.service.analyse import CLASSIFIED, NEEDS_ROI, Analysis, ImageFacts, Overlay, RegionAnswer
from edge_app.service.lifecycle import ScanState, advance, received
from edge_app.service.writer import ResultWriter

IDENTITY = ModelIdentity("bench", "1", "hybrid", "int8", "classifier_int8.tflite", "0" * 64, "none", 0.5, 0.9)
FACTS = ImageFacts("DICOM", 2560, 3328, (256.0, 332.8), "R", "CC")


def _overlay() -> bytes:
    """An overlay's size (1024 x 1300) with smooth content: 5,000 of them fit a small disk."""
    ramp = (np.linspace(0, 255, 1300, dtype=np.float32) // 32 * 32)[np.newaxis, :].repeat(1024, axis=0)
    picture = cv2.merge([ramp, ramp[::-1], np.full_like(ramp, 90)]).astype(np.uint8)
    cv2.circle(picture, (400, 500), 180, (0, 215, 255), 3)
    ok, png = cv2.imencode(".png", picture)
    assert ok
    return png.tobytes()


def _analysis(index: int, overlay: bytes) -> Analysis:
    if index % 5 == 4:
        return Analysis(f"{index:064x}", NEEDS_ROI, FACTS, (), "a full-field film without regions", None, {})
    probability = (index * 37 % 100) / 100
    box = Box(100, 100, 400, 400)
    decision = "malignant" if probability >= IDENTITY.threshold else "benign"
    region = RegionAnswer("A", "circle", "file", None, box, box, probability, 0.0, decision, (250, 250))
    return Analysis(f"{index:064x}", CLASSIFIED, FACTS, (region,), None, Overlay.encoded(overlay), {})


def _write(writer: ResultWriter, index: int, overlay: bytes) -> None:
    analysis = _analysis(index, overlay)
    record = advance(received(f"scan {index:05d}.dcm"), ScanState.CLAIMED)
    record = advance(
        record,
        ScanState.ANALYSED,
        sha256=analysis.sha256,
        result_stem=f"scan {index:05d}",
        status=analysis.status,
        label=analysis.label,
        probability=analysis.probability,
    )
    writer.write_result(record, analysis)


def _chromium_load_seconds(index: Path, repeats: int) -> list[float] | None:
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
        for _ in range(repeats):
            page = browser.new_page()
            started = time.perf_counter()
            page.goto(index.as_uri(), wait_until="load")  # every thumbnail drawn (none is lazy)
            timings.append(time.perf_counter() - started)
            page.close()
        browser.close()
    return timings


def measure_results_page(count: int, repeats: int) -> dict[str, Any]:
    overlay = _overlay()
    with tempfile.TemporaryDirectory(prefix="mammo-bench-page-") as folder:
        results = Path(folder) / "results"
        writer = ResultWriter(results, IDENTITY)
        for index in range(count - 1):
            _write(writer, index, overlay)
        page = ResultsPage(results, PageContext(IDENTITY, "", None))
        catch_up: list[
            float
        ] = []  # a folder used before pages existed: a few older pages per update until all are there
        while not catch_up or len(list((results / PAGES).iterdir())) < -(-(count - 1) // PAGE_SIZE):
            started = time.perf_counter()
            page.update()
            catch_up.append(time.perf_counter() - started)
        _write(writer, count - 1, overlay)  # one more result
        after_one = []
        for _ in range(repeats):  # the same work each time: the newest page rendered again
            started = time.perf_counter()
            page.update()
            after_one.append(time.perf_counter() - started)
        newest_rows = (results / INDEX).read_text(encoding="utf-8").count("<tr data-status=")
        loads = _chromium_load_seconds(results / INDEX, repeats)
        index_kb = (results / INDEX).stat().st_size / 1024
    return {
        "results": count,
        "rounds": repeats,
        "catch_up_updates": len(catch_up),
        "catch_up_update_max_s": round(max(catch_up), 3),
        "update_after_one_result_s": [round(value, 4) for value in after_one],
        "update_after_one_result_median_s": round(statistics.median(after_one), 4),
        "newest_page_rows": newest_rows,
        "index_kb": round(index_kb, 1),
        "chromium_load_s": None if loads is None else [round(value, 3) for value in loads],
        "chromium_load_median_s": None if loads is None else round(statistics.median(loads), 3),
    }
