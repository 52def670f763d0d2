"""Both pages in a real browser: headless Chromium (Debian's, driven by Playwright; `make test` installs both). Every
image loads, the filters work, the page shows the figures of the JSON results, the console stays clean, and nothing
is fetched from anywhere but the page's own folder."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from chromium import CHROMIUM, NO_CHROMIUM, NO_PLAYWRIGHT, launch
from fakemodel import write_fake_bundle
from pages import results_with_every_status

from edge_app.manifest import load_manifest
from edge_app.report.page import CARD, INDEX, PAGES, read_audit

playwright = pytest.importorskip("playwright.sync_api", reason=NO_PLAYWRIGHT)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)


class Visit:
    """One page opened in the browser, with what it asked for and what it said."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.page = browser.new_page()
        self.requests: list[str] = []
        self.console: list[tuple[str, str]] = []
        self.failed: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("requestfailed", lambda request: self.failed.append(request.url))
        self.page.on("console", lambda message: self.console.append((message.type, message.text)))
        self.page.on("pageerror", lambda error: self.console.append(("error", str(error))))
        self.page.goto(path.resolve().as_uri(), wait_until="load")  # the load event waits for every image

    def images(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.page.evaluate(
            "Array.from(document.images).map(i => ({src: i.src, width: i.naturalWidth, alt: i.alt}))"
        )
        return result

    def check_clean(self, folder: Path) -> None:
        """Every image drawn, no console message, no failed request, nothing from outside `folder`."""
        images = self.images()
        assert images and all(image["width"] > 0 for image in images), images
        assert all(image["alt"] for image in images)  # a text alternative for every picture
        assert self.console == [] and self.failed == []
        root = folder.resolve().as_uri()
        outside = [url for url in self.requests if not (url.startswith(root) or url.startswith("data:"))]
        assert outside == []


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as driver:
        launched = launch(driver)
        yield launched
        launched.close()


def _visible_rows(visit: Visit) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = visit.page.evaluate(
        """Array.from(document.querySelectorAll('tr[data-status]')).filter(r => !r.hidden).map(r => ({
            status: r.dataset.status,
            name: r.cells[1].innerText.split('\\n')[0],
            regions: Array.from(r.querySelectorAll('table.regions tr')).slice(1).map(x => ({
                label: x.cells[0].innerText, p: x.cells[1].innerText, decision: x.cells[2].innerText}))}))"""
    )
    return rows


def _check_results_page(browser: Any, results: Path) -> Visit:
    """Every scan of the audit log listed, newest first, with its status and each region's figures as in its JSON;
    a clean visit; and the "needs a region" filter alone shows exactly those scans."""
    visit = Visit(browser, results / INDEX)
    visit.check_clean(results)
    shown = _visible_rows(visit)
    audit = list(reversed(read_audit(results)))
    assert [row["name"] for row in shown] == [entry["input"] for entry in audit]
    assert [row["status"] for row in shown] == [entry["status"] for entry in audit]
    for row, entry in zip(shown, audit, strict=True):
        if entry["status"] == "classified":
            document = json.loads((results / entry["result"]).read_text())
            expected = [
                {"label": r["label"], "p": f"{r['probability']:.3f}", "decision": r["decision"]}
                for r in document["regions"]
            ]
            assert [{**region, "decision": region["decision"].split()[-1]} for region in row["regions"]] == expected
        else:
            assert row["regions"] == []
    body = visit.page.inner_text("body")
    assert "Research use only, not for clinical use" in body
    visit.page.uncheck("input[data-filter=status][value=classified]")
    visit.page.uncheck("input[data-filter=status][value=rejected]")
    needs_roi = [entry["input"] for entry in audit if entry["status"] == "needs_roi"]
    assert [row["name"] for row in _visible_rows(visit)] == needs_roi
    return visit


def test_the_results_page_shows_every_scan_as_its_json_says(browser: Any, tmp_path: Path) -> None:
    results = results_with_every_status(tmp_path).paths.results
    visit = _check_results_page(browser, results)
    assert "0" * 64 in visit.page.inner_text("body")  # the model file's hash


def test_the_demo_results_page(browser: Any) -> None:
    """`make demo`'s own page (set MAMMO_TEST_DEMO_DIR=demo-out after the demo; CI does not run the demo)."""
    demo = os.environ.get("MAMMO_TEST_DEMO_DIR")
    if not demo:
        pytest.skip("MAMMO_TEST_DEMO_DIR is not set (the folder `make demo` wrote)")
    results = Path(demo) / "results"
    visit = _check_results_page(browser, results)
    statuses = [entry["status"] for entry in read_audit(results)]
    assert {"classified", "needs_roi", "rejected"} <= set(statuses)  # the demo shows every kind
    assert (results / CARD).is_file() and visit.page.locator(f"a[href='{CARD}']").count() == 1


def test_the_filters_show_exactly_what_they_name(browser: Any, tmp_path: Path) -> None:
    results = results_with_every_status(tmp_path).paths.results
    visit = Visit(browser, results / INDEX)
    statuses = [entry["status"] for entry in read_audit(results)]
    visit.page.uncheck("input[data-filter=status][value=classified]")
    visit.page.uncheck("input[data-filter=status][value=rejected]")
    only = _visible_rows(visit)
    assert [row["status"] for row in only] == ["needs_roi"] * statuses.count("needs_roi") and only
    assert visit.page.inner_text("#shown") == str(len(only))
    visit.page.check("input[data-filter=status][value=classified]")
    visit.page.uncheck("input[data-filter=status][value=needs_roi]")
    visit.page.uncheck("input[data-filter=decision][value=benign]")
    malignant = _visible_rows(visit)
    assert malignant and all(any("malignant" in region["decision"] for region in row["regions"]) for row in malignant)
    hidden = statuses.count("classified") - len(malignant)
    assert hidden >= 0 and visit.console == []


def test_older_pages_are_reached_from_the_newest(browser: Any, tmp_path: Path) -> None:
    results = results_with_every_status(tmp_path, page_size=2, copies=2).paths.results
    visit = Visit(browser, results / INDEX)
    visit.page.click("nav >> text=older")
    visit.page.wait_for_load_state("networkidle")
    assert visit.page.url.endswith(f"{PAGES}/page-0004.html")
    assert len(_visible_rows(visit)) == 2 and visit.console == [] and visit.failed == []


def _plot(path: Path, colour: tuple[int, int, int]) -> None:
    picture = np.full((200, 300, 3), colour, np.uint8)
    cv2.line(picture, (10, 190), (290, 10), (0, 0, 0), 2)
    cv2.imwrite(str(path), picture)


METRICS = {
    "n_images": 48,
    "n_groups": 12,
    "n_malignant": 24,
    "roc_auc": 0.9375,
    "roc_auc_ci": [0.85, 0.99],
    "sensitivity": 0.9583,
    "specificity": 0.8333,
    "ppv": 0.85,
    "npv": 0.95,
    "brier": 0.09,
    "ece": 0.05,
    "confusion_matrix": [[20, 4], [1, 23]],
}
REPORT = {
    "variants": {
        "int8": {
            "status": "first",
            "agreement": 0.9844,
            "agreement_ci": [0.97, 0.995],
            "auc_drop": 0.0017,
            "max_abs_prob_diff": 0.1623,
            "heatmap_pearson": 0.965,
            "heatmap_pearson_ci": [0.95, 0.976],
            "size_bytes": 32_454_736,
        }
    },
    "thresholds": {"max_auc_drop": 0.01, "min_agreement": 0.98, "min_heatmap_pearson": 0.9},
    "fidelity_images": 384,
}


def test_the_model_card_shows_the_bundles_figures_and_plots(browser: Any, tmp_path: Path) -> None:
    from mammo_convert.card import write_model_card

    training = {"sources": ["SYNTH", "OTHER"], "counts": {"train": 224, "val": 48, "test": 48}, "weights": "none"}
    bundle = write_fake_bundle(
        tmp_path / "bundle",
        metrics={"test": METRICS, "per_source": {"SYNTH": METRICS, "OTHER": {**METRICS, "roc_auc": 0.5}}},
        training=training,
    )
    run = tmp_path / "run"
    run.mkdir()
    _plot(run / "roc_test.png", (200, 230, 250))
    _plot(run / "calibration_test.png", (250, 230, 200))
    with (run / "splits.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "source", "group", "split", "sha256"])
        for index in range(12):
            writer.writerow([f"x{index}.png", index % 2, "SYNTH", f"SYNTH/patient:P{index // 2}", "train", "0"])
    card = write_model_card(bundle, load_manifest(bundle), REPORT, run)
    visit = Visit(browser, card)
    visit.check_clean(bundle)
    assert [image["alt"] for image in visit.images()] == [
        "ROC curve on the test split",
        "Calibration on the test split",
    ]
    assert all(url.startswith("data:") for url in visit.requests[1:])  # the plots are inside the page
    text = visit.page.inner_text("body")
    assert "0.938 (0.850-0.990)" in text and "0.500 (0.850-0.990)" in text  # AUC with its interval, per source
    assert "0.9844 (0.9700-0.9950)" in text and "0.9650 (0.9500-0.9760)" in text and "32.5" in text
    assert "Grouped by patient: all images of one patient" in text and "6 train, 0 validation, 0 test groups" in text
    assert f"at least {load_manifest(bundle).threshold:.4f}" in text
    assert "Research use only, not for clinical use" in text and "needs a region" in text
    assert "23 true and 4 false positives, 20 true and 1 false negatives" in text
    assert card.name == CARD
