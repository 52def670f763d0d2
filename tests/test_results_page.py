"""The results page, read as HTML: every scan with its status, the figures of its result file, its links; pages
that fill are left alone; nothing from outside the folder; names escaped."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
from fakes import FAKE_IDENTITY
from pages import OPERATING_POINT, SCANS, PictureAnalyser, page_for, results_with_every_status

from edge_app.detect import Candidate
from edge_app.regions import Region
from edge_app.report.page import CARD, INDEX, NOTICE, PAGES, read_audit
from edge_app.service.analyse import NEEDS_ROI, Analysis, Sidecar
from edge_app.service.lifecycle import THUMBS


class Page(HTMLParser):
    """Rows (status, decisions, texts), every link and image source of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.links: list[str] = []
        self.images: list[dict[str, str]] = []
        self.scripts_from: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "tr" and "data-status" in values:
            self.rows.append(values)
        elif tag == "a":
            self.links.append(values["href"])
        elif tag == "img":
            self.images.append(values)
        elif tag in ("script", "link") and ("src" in values or "href" in values):
            self.scripts_from.append(values.get("src") or values.get("href", ""))


def _read(path: Path) -> tuple[str, Page]:
    text = path.read_text(encoding="utf-8")
    return text, Page(text)


def test_every_scan_is_listed_newest_first_with_the_figures_of_its_result(tmp_path: Path) -> None:
    config = results_with_every_status(tmp_path)
    results = config.paths.results
    text, page = _read(results / INDEX)
    audit = read_audit(results)
    assert [row["data-status"] for row in page.rows] == [entry["status"] for entry in reversed(audit)]
    assert sorted(row["data-status"] for row in page.rows) == [
        "classified",
        "classified",
        "classified",
        "needs_roi",
        "rejected",
    ]
    for entry in audit:
        if entry["status"] != "classified":
            continue
        document = json.loads((results / entry["result"]).read_text())
        for region in document["regions"]:  # each region's probability and decision, as in the JSON
            cell = f'<td class="p">{region["probability"]:.3f}</td><td><span class="decision {region["decision"]}">'
            assert cell in text
    assert NOTICE in text and FAKE_IDENTITY.sha256 in text and OPERATING_POINT in text
    assert f"at least <strong>{FAKE_IDENTITY.threshold:.3f}</strong>" in text
    assert "film three.dcm is a full-field film (fake)" in text  # why it needs a region
    assert '<small class="reason">decode: unrecognised file format (fake)</small>' in text  # why it was refused
    assert "patch &lt;b&gt;one &amp; more.png" in text and "<b>one" not in text  # a name is text, never markup
    for entry in audit:  # when each scan was answered, to the second
        assert f"<br><small>{entry['time'][:19].replace('T', ' ')} UTC</small>" in text
    for region in (region for entry in audit for region in _regions_of(results, entry)):  # the decision's own mark
        mark = "\u25b2" if region["decision"] == "malignant" else "\u25cb"
        assert f'<span class="decision {region["decision"]}">{mark} {region["decision"]}</span>' in text


def _regions_of(results: Path, entry: dict[str, object]) -> list[dict[str, object]]:
    if entry["status"] != "classified":
        return []
    regions: list[dict[str, object]] = json.loads((results / str(entry["result"])).read_text())["regions"]
    return regions


def test_links_and_images_stay_in_the_folder_and_exist(tmp_path: Path) -> None:
    results = results_with_every_status(tmp_path).paths.results
    _, page = _read(results / INDEX)
    assert page.scripts_from == []  # scripts and styles are inline: nothing is fetched
    for target in page.links + [image["src"] for image in page.images]:
        assert not re.match(r"^[a-z]+:", target) and not target.startswith("/"), target  # relative only
        assert (results / target).exists(), target
    assert len(page.images) == 3 and all(image["alt"].startswith("Overlay of ") for image in page.images)
    for image in page.images:  # each overlay's thumbnail is named after it
        overlay = Path(image["src"]).stem + ".gradcam.jpg"
        assert image["src"].startswith("thumbs/") and any(link.endswith(overlay) for link in page.links), image


def test_an_earlier_versions_png_overlay_still_gets_its_thumbnail(tmp_path: Path) -> None:
    results = results_with_every_status(tmp_path).paths.results
    document_path = next(path for path in results.glob("*.json") if json.loads(path.read_text()).get("heatmap"))
    document = json.loads(document_path.read_text())
    jpeg = results / document["heatmap"]
    png = jpeg.with_name(jpeg.name.replace(".gradcam.jpg", ".gradcam.png"))
    assert cv2.imwrite(str(png), cv2.imread(str(jpeg)))
    jpeg.unlink()
    document_path.write_text(json.dumps({**document, "heatmap": png.name}))
    for thumb in (results / THUMBS).iterdir():
        thumb.unlink()
    page_for(tmp_path).update()
    _, page = _read(results / INDEX)
    assert f"thumbs/{document_path.stem}.jpg" in [image["src"] for image in page.images]
    assert png.name in page.links and (results / THUMBS / f"{document_path.stem}.jpg").is_file()


def test_a_thumbnail_a_power_cut_lost_or_left_empty_is_made_again(tmp_path: Path) -> None:
    """The write stage writes each thumbnail as a cache (no fsync): the page remakes what a power cut took."""
    results = results_with_every_status(tmp_path).paths.results
    emptied, lost = sorted((results / THUMBS).iterdir())[:2]
    emptied.write_bytes(b"")
    lost.unlink()
    page_for(tmp_path).update()
    _, page = _read(results / INDEX)
    for thumb in (emptied, lost):
        assert cv2.imread(str(thumb), cv2.IMREAD_COLOR).shape[1] == 240
        assert f"{THUMBS}/{thumb.name}" in [image["src"] for image in page.images]


def test_pages_fill_in_order_and_a_full_page_is_left_as_it_is(tmp_path: Path) -> None:
    config = results_with_every_status(tmp_path, page_size=2, copies=2)  # 10 scans: pages of 2
    pages = config.paths.results / PAGES
    names = sorted(path.name for path in pages.iterdir())
    assert names == [f"page-{number:04d}.html" for number in range(1, 6)]
    for number in range(1, 6):
        _, page = _read(pages / f"page-{number:04d}.html")
        assert len(page.rows) == 2
    first = pages / "page-0001.html"
    before = first.stat().st_mtime_ns
    page_for(tmp_path, page_size=2).update()
    assert first.stat().st_mtime_ns == before  # a full page is never written again
    index, newest = (config.paths.results / INDEX).read_text(), (pages / "page-0005.html").read_text()
    assert "page 5 (newest)" in index and index.count("<tr data-status=") == newest.count("<tr data-status=") == 2
    assert "<title>mammo-edge results, page 5 (newest)</title>" in index
    assert "<title>mammo-edge results, page 1</title>" in first.read_text()
    _, oldest = _read(first)
    assert "page-0002.html" in oldest.links and "../index.html" in oldest.links


def test_the_model_card_is_copied_beside_the_pages_and_linked(tmp_path: Path) -> None:
    card = tmp_path / "bundle" / CARD
    card.parent.mkdir()
    card.write_text("<html>card v1</html>")
    results = results_with_every_status(tmp_path, card=card).paths.results
    assert (results / CARD).read_text() == "<html>card v1</html>" and CARD in _read(results / INDEX)[1].links
    card.write_text("<html>card v2</html>")  # a new bundle: its card replaces the old one
    page_for(tmp_path, card).update()
    assert (results / CARD).read_text() == "<html>card v2</html>"


def test_an_empty_folder_gets_a_page_that_says_so(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    page_for(tmp_path).update()
    text, page = _read(tmp_path / "results" / INDEX)
    assert "No scans yet." in text and page.rows == [] and "page 1 (newest)" in text


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path: Path) -> None:
    results = results_with_every_status(tmp_path).paths.results
    with (results / "results.jsonl").open("a") as log:
        log.write('{"time": "2026-01-01T00:00:00", "id": "cut')
    assert len(read_audit(results)) == len(SCANS)
    with (results / "results.jsonl").open("a") as log:  # the service again: its lines follow the torn one
        log.write('\n{"id": "after the crash"}\n')
    entries = read_audit(results)
    assert len(entries) == len(SCANS) + 1 and entries[-1] == {"id": "after the crash"}


def test_a_folder_with_results_but_no_pages_catches_up_a_few_pages_per_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upgraded device: thousands of results, no pages yet. Each update writes the newest page (thumbnails made)
    and at most CATCH_UP_PAGES older ones, newest first, showing their overlays until a thumbnail exists."""
    import shutil

    from edge_app.report import page as page_module

    results = results_with_every_status(tmp_path, page_size=2, copies=2).paths.results  # 10 scans, 5 pages
    shutil.rmtree(results / PAGES)
    shutil.rmtree(results / THUMBS)
    monkeypatch.setattr(page_module, "CATCH_UP_PAGES", 2)
    page_for(tmp_path, page_size=2).update()
    assert sorted(path.name for path in (results / PAGES).iterdir()) == [
        "page-0003.html",
        "page-0004.html",
        "page-0005.html",
    ]
    _, caught_up = _read(results / PAGES / "page-0003.html")
    assert [image["src"] for image in caught_up.images if "thumbs/" in image["src"]] == []  # overlays, not decoded
    assert all(image["src"].endswith(".gradcam.jpg") for image in caught_up.images) and caught_up.images
    page_for(tmp_path, page_size=2).update()
    assert len(list((results / PAGES).iterdir())) == 5
    for page in (results / PAGES).iterdir():
        for image in _read(page)[1].images:
            assert (page.parent / image["src"]).exists()


def test_an_update_reads_only_the_lines_appended_since_the_last_and_a_rotation_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device's log grows for years: after the first update, each reads the new lines only (never the whole log),
    and a rotated log is read again once."""
    from edge_app.report import page as page_module

    results = results_with_every_status(tmp_path, page_size=2, copies=2).paths.results  # 10 scans
    page = page_for(tmp_path, page_size=2)
    page.update()
    log = results / "results.jsonl"
    reads: list[tuple[str, int]] = []
    real_read = page_module.AuditTail._read

    def recorded(tail: page_module.AuditTail, path: Path, offset: int) -> int:
        reads.append((path.name, offset))
        return real_read(tail, path, offset)

    monkeypatch.setattr(page_module.AuditTail, "_read", recorded)
    monkeypatch.setattr(page_module, "read_audit", lambda results: pytest.fail("the whole log was read"))
    size = log.stat().st_size
    last = json.loads(log.read_text().splitlines()[-1])
    with log.open("a") as handle:
        handle.write(json.dumps({**last, "id": "appended", "input": "appended.png"}) + "\n")
    page.update()
    assert reads == [("results.jsonl", size)]
    _, newest = _read(results / PAGES / "page-0006.html")
    assert len(newest.rows) == 1 and "appended.png" in (results / INDEX).read_text()

    reads.clear()
    log.rename(results / "results.000001.jsonl")  # the writer rotated it
    with log.open("w") as handle:
        handle.write(json.dumps({**last, "id": "after", "input": "after-rotation.png"}) + "\n")
    page.update()
    assert reads == [("results.000001.jsonl", 0), ("results.jsonl", 0)]
    assert "after-rotation.png" in (results / INDEX).read_text() and "appended.png" in (results / INDEX).read_text()


def test_a_log_caught_between_its_rotation_and_the_next_line_is_read_whole(tmp_path: Path) -> None:
    """The writer renames the full log, then appends to a new one: a page made in between (a restart after a crash
    there) still counts and lists every entry, the last rotated segment's included."""
    from edge_app.report.page import AuditTail

    results = results_with_every_status(tmp_path).paths.results  # 5 scans
    (results / "results.jsonl").rename(results / "results.000002.jsonl")
    tail = AuditTail(results, keep=3)
    tail.refresh()
    assert tail.count == 5 and [entry["input"] for entry in tail.recent] == [
        entry["input"] for entry in read_audit(results)[-3:]
    ]


class ProposingAnalyser(PictureAnalyser):
    """Suggestions on a film (none, with the reason, on a PNG film); the device's own regions on a "DEVICE" patch."""

    def analyse(self, data: bytes, name: str, sidecar: Sidecar | None = None) -> Analysis:
        analysis = super().analyse(data, name, sidecar)
        if analysis.status == NEEDS_ROI and name.endswith(".png"):
            return replace(analysis, suggestions_reason="the film's pixel spacing is unknown (fake)")
        if analysis.status == NEEDS_ROI:
            return replace(analysis, suggestions=(Candidate(Region("A", 120.4, 80.6, 30.0), 0.93),))
        if data.startswith(b"DEVICE"):
            device = tuple(replace(answer, marked_by="device", detector_score=0.8) for answer in analysis.regions)
            return replace(analysis, regions=device)
        return analysis


# what ProposingAnalyser answers with suggestions, with the reason there are none, and with the device's own regions
PROPOSED_SCANS: dict[str, tuple[bytes, bytes | None]] = {
    "film.dcm": (b"FULL film", None),
    "film.png": (b"FULL png film", None),
    "proposed.dcm": (b"DEVICE film", None),
}


def test_the_page_shows_the_devices_suggestions_and_says_which_regions_it_proposed(tmp_path: Path) -> None:
    config = results_with_every_status(tmp_path, analyser=ProposingAnalyser(), scans=PROPOSED_SCANS)
    text = (config.paths.results / INDEX).read_text(encoding="utf-8")
    assert "suggested by the device: A at (120, 81) score 0.93" in text
    assert "no suggestions: the film&#x27;s pixel spacing is unknown (fake)" in text
    assert "A (proposed by the device)</td>" in text
    assert text.count("a mass the device did not propose was not assessed") == 1


def test_the_thresholds_meaning_is_read_from_the_test_metrics_or_left_out() -> None:
    from edge_app.report.page import operating_point

    test = {"n_images": 120, "sensitivity": 0.8512, "specificity": 0.604}
    assert operating_point({"test": test}) == (
        "on the held-out test split (120 images) this threshold gave sensitivity 0.85 and specificity 0.60"
    )
    assert operating_point({"test": {"sensitivity": 0.9, "specificity": 0.5}}).startswith(
        "on the held-out test split (? images) this threshold gave sensitivity 0.90"
    )
    for partial in ({"sensitivity": 0.9}, {"specificity": 0.5}, {}):
        assert operating_point({"test": partial}) == ""
    assert operating_point({}) == "" and operating_point({"test": None}) == ""


def test_a_duplicate_says_which_scan_had_the_same_content(tmp_path: Path) -> None:
    scans = {"first.png": (b"patch same", None), "again.png": (b"patch same", None)}
    results = results_with_every_status(tmp_path, scans=scans).paths.results
    first, again = read_audit(results)
    assert again["duplicate_of"] == first["result"] == "first.json" and not first.get("duplicate_of")
    text = (results / INDEX).read_text()
    assert text.count("same content as") == 1 and "<br><small>same content as first.json</small>" in text


def test_a_scans_dicom_answers_are_linked_beside_its_result(tmp_path: Path) -> None:
    config = results_with_every_status(tmp_path)
    results = config.paths.results
    classified = next(entry for entry in read_audit(results) if entry["input"] == "patch five.png")
    stem = str(classified["result"]).removesuffix(".json")
    (results / "dicom").mkdir()
    for suffix in (".sr.dcm", ".sc.dcm"):
        (results / "dicom" / f"{stem}{suffix}").write_bytes(b"answer")
    page_for(tmp_path).update()
    text, page = _read(results / INDEX)
    assert f"dicom/{stem}.sr.dcm" in page.links and f"dicom/{stem}.sc.dcm" in page.links
    links = (
        f'<a href="{classified["result"]}">result JSON</a><br><a href="dicom/{stem}.sr.dcm">DICOM report</a>'
        f'<br><a href="dicom/{stem}.sc.dcm">DICOM capture</a>'
    )
    assert links in text  # one link a line, in this order


def test_the_page_says_how_many_scans_it_holds(tmp_path: Path) -> None:
    results = results_with_every_status(tmp_path).paths.results
    text, page = _read(results / INDEX)
    assert len(page.rows) == len(SCANS)
    assert f'<span id="shown">{len(SCANS)}</span> of {len(SCANS)} scans on this page shown.' in text


def test_suggestions_are_listed_in_one_line_or_the_reason_there_are_none() -> None:
    from edge_app.report.page import _suggestions

    found = [
        {"label": "A", "x": 120.4, "y": 80.6, "score": 0.931},
        {"label": "B<", "x": 10, "y": 20, "score": 0.5},
    ]
    assert _suggestions({"suggestions": found}) == (
        '<br><small class="suggestions">suggested by the device: A at (120, 81) score 0.93, '
        "B&lt; at (10, 20) score 0.50</small>"
    )
    assert _suggestions({"suggestions": [], "suggestions_reason": "off"}) == (
        '<br><small class="suggestions">no suggestions: off</small>'
    )
    assert _suggestions({"suggestions": None}) == ""  # a patch, or a film from before the detector: nothing said


GOLDEN = Path(__file__).parent / "golden" / "results-page"
SCANNED_AT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


def test_the_pages_are_exactly_as_pinned(tmp_path: Path) -> None:
    """Every status, the regions tables, suggestions, a duplicate, DICOM answers and three pages, compared with the
    pinned HTML (times aside): what a reader sees changes only on purpose. After a change that is meant, look at the
    new pages in a browser, then `MAMMO_EDGE_UPDATE_GOLDEN=1 pytest tests/test_results_page.py` and commit them."""
    card = tmp_path / "bundle" / CARD
    card.parent.mkdir()
    card.write_text("<html>card</html>")
    (tmp_path / "results" / "dicom").mkdir(parents=True)
    for suffix in (".sr.dcm", ".sc.dcm"):
        (tmp_path / "results" / "dicom" / f"patch five{suffix}").write_bytes(b"answer")
    scans = {**SCANS, **PROPOSED_SCANS, "again.png": (b"patch five", None)}
    results = results_with_every_status(
        tmp_path, card=card, page_size=3, analyser=ProposingAnalyser(), scans=scans
    ).paths.results
    pages = {name: results / PAGES / name for name in ("page-0001.html", "page-0002.html")} | {INDEX: results / INDEX}
    for name, path in pages.items():
        text = SCANNED_AT.sub("YYYY-MM-DD hh:mm:ss UTC", path.read_text(encoding="utf-8"))
        if os.environ.get("MAMMO_EDGE_UPDATE_GOLDEN"):
            (GOLDEN / name).write_text(text, encoding="utf-8")
        assert text == (GOLDEN / name).read_text(encoding="utf-8"), f"{name} differs from {GOLDEN / name}"
    for thumb in sorted((results / THUMBS).iterdir()):  # the overlay (200 x 120, one colour) at the page's width
        picture = cv2.imread(str(thumb), cv2.IMREAD_COLOR)
        assert picture.shape == (144, 240, 3), thumb.name
        assert np.abs(picture.reshape(-1, 3).mean(axis=0) - (40, 90, 160)).max() < 3, thumb.name
