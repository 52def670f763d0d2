"""The detector's suggestions in the marking view, in a real browser (Debian's Chromium through Playwright): a film
answered ``needs_roi`` shows the device's candidates dashed with an accept button each; one click makes the
suggestion a circle of the reader's, and submitted, it is classified as the reader's region at that place. The web
app runs in this process (uvicorn on a free port) over a fake model bundle with a fake detector; the pipeline
answers the submission as the daemon's loop would."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from argon2 import PasswordHasher
from dicomfiles import encode, mammogram
from dicomnode import free_port
from fakemodel import write_fake_bundle

from edge_app.config import Config, IngestSection, ModelSection, PathsSection, WebSection
from edge_app.model import EdgeModel
from edge_app.proposals import FilmDetector
from edge_app.scope import ScopeLimits
from edge_app.service.analyse import ModelAnalyser
from edge_app.service.daemon import build_pipeline, journal_path
from edge_app.service.journal import Journal
from edge_app.service.pipeline import ScanPipeline
from edge_app.web.accounts import AccountStore
from edge_app.web.app import create_app, web_folder

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: `make test` installs it")
CHROMIUM = os.environ.get("MAMMO_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,  # a browser
    pytest.mark.skipif(
        CHROMIUM is None, reason="no Chromium here (Debian's `chromium` package: `make test` installs it)"
    ),
]
PASSWORD = "correct horse battery"
MASS = (300, 200, 30)  # x, y, radius in film pixels


def _film() -> bytes:
    """A 0.1 mm film, 480 x 360 px: tissue brightening towards the chest wall and one bright mass (`MASS`)."""
    rows, columns = np.mgrid[0:480, 0:360].astype(np.float32)
    tissue = (columns / 330) ** 2 + ((rows - 240) / 220) ** 2 <= 1
    film = np.where(tissue, 1800 - columns * 2 + rows * 0.5, 40).astype(np.uint16)
    x, y, radius = MASS
    film[(columns - x) ** 2 + (rows - y) ** 2 <= radius**2] = 3900
    return encode(mammogram(film))


class Served:
    """The web app on a free loopback port, in a thread of this process, until `stop`."""

    def __init__(self, app: Any) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        port = int(self.url.rsplit(":", 1)[1])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="web-app", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the web app did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def device(tmp_path: Path, fake_runtime: None) -> Iterator[tuple[Served, ScanPipeline, str]]:
    """The web app over a film the pipeline answered needs_roi with the fake detector's suggestions."""
    bundle = write_fake_bundle(tmp_path / "bundle", patch_side_px=(48, 64), detector=True)
    paths = PathsSection(*(tmp_path / name for name in ("inbox", "results", "archive", "quarantine", "state", "out")))
    config = Config(
        model=ModelSection(bundle=bundle, threads=1),
        paths=paths,
        ingest=IngestSection(settle_seconds=0.0, sidecar_wait=0.0),
        web=WebSection(enabled=True),
    )
    model = EdgeModel.load(bundle, "float32", "auto", 1)
    detector = FilmDetector.load(bundle, model.manifest, model.runtime, 1)
    analyser = ModelAnalyser(model, config.ingest.max_pixels, ScopeLimits.resolve(model.manifest.scope), detector)
    journal = Journal(journal_path(config))
    pipeline = build_pipeline(config, journal, analyser)
    (paths.inbox / "film.dcm").write_bytes(_film())
    film = pipeline.take(paths.inbox / "film.dcm")
    assert film.status == "needs_roi"
    accounts = AccountStore(
        web_folder(config) / "accounts.sqlite3", hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    accounts.add_user("reader1", PASSWORD)
    served = Served(create_app(config, accounts))
    try:
        yield served, pipeline, film.scan_id
    finally:
        served.stop()
        accounts.close()
        journal.close()


@pytest.fixture
def page() -> Iterator[Any]:
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        opened = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
        errors: list[str] = []
        opened.on("pageerror", lambda error: errors.append(str(error)))
        opened.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        yield opened
        assert errors == []
        browser.close()


def test_a_reader_accepts_a_suggestion_with_one_click_and_gets_it_classified_as_theirs(
    device: tuple[Served, ScanPipeline, str], page: Any
) -> None:
    served, pipeline, film_id = device
    page.goto(f"{served.url}/login")
    page.fill("#user", "reader1")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{served.url}/scans")
    page.goto(f"{served.url}/scans/{film_id}")
    page.wait_for_selector("body[data-loaded=true]")
    assert page.inner_text("#suggestions-note").startswith("The device's detector proposes these places")
    shown = page.evaluate("mammoMark.suggestions()")
    assert [item["label"] for item in shown][:1] == ["A"] and all(not item["accepted"] for item in shown)
    first = shown[0]
    x, y, _ = MASS
    assert abs(first["x"] - x) <= 16 and abs(first["y"] - y) <= 16  # within two heatmap cells
    assert page.evaluate("mammoMark.document()")["regions"] == []
    page.click("text=Accept suggestion A")
    (region,) = page.evaluate("mammoMark.document()")["regions"]
    assert region == {"label": "A", "x": first["x"], "y": first["y"], "radius": first["r"]}
    assert page.is_disabled("text=Accept suggestion A")  # accepted once
    assert page.evaluate("mammoMark.suggestions()")[0]["accepted"] is True  # no longer drawn dashed
    page.click("#submit")
    pending = _wait(pipeline.claimer.submissions.pending, "the submission")
    taken = pipeline.analyse_submission(pending[0])
    assert taken is not None
    answer = pipeline.resume(*taken)
    page.wait_for_selector("body[data-answered=true]", timeout=30_000)
    assert (answer.answers, answer.reader, answer.status) == (film_id, "reader1", "classified")
    assert page.inner_text("#answer tbody td:nth-child(4)") == "reader (reader1)"


def _wait(condition: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found
