"""The detector's suggestions in the marking view, in a real browser (Debian's Chromium through Playwright): a film
answered ``needs_roi`` shows the device's candidates dashed with an accept button each; one click makes the
suggestion a circle of the reader's, and submitted, it is classified as the reader's region at that place. The web
app runs in this process (uvicorn on a free port) over a fake model bundle with a fake detector; the pipeline
answers the submission as the daemon's loop would."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from chromium import watched_page
from dicomfiles import encode, mammogram
from dicomnode import free_port
from fakedevice import FAST_HASHER, fake_device
from fakemodel import DETECTOR_FILM_MASS, detector_film

from edge_app.service.pipeline import ScanPipeline
from edge_app.web.accounts import AccountStore
from edge_app.web.app import create_app, web_folder

pytestmark = pytest.mark.slow  # a browser
PASSWORD = "correct horse battery"


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
    device = fake_device(tmp_path, detector=True)
    film = device.answer("film.dcm", encode(mammogram(detector_film())))
    assert film.status == "needs_roi"
    accounts = AccountStore(web_folder(device.config) / "accounts.sqlite3", hasher=FAST_HASHER)
    accounts.add_user("reader1", PASSWORD)
    served = Served(create_app(device.config, accounts))
    try:
        yield served, device.pipeline, film.scan_id
    finally:
        served.stop()
        accounts.close()
        device.journal.close()


@pytest.fixture
def page() -> Iterator[Any]:
    with watched_page() as opened:
        yield opened


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
    x, y, _ = DETECTOR_FILM_MASS
    assert abs(first["x"] - x) <= 16 and abs(first["y"] - y) <= 16  # within two heatmap cells
    assert page.evaluate("mammoMark.document()")["regions"] == []
    page.click("text=Accept suggestion A")
    (region,) = page.evaluate("mammoMark.document()")["regions"]
    assert region == {"label": "A", "x": first["x"], "y": first["y"], "radius": first["r"]}
    assert page.is_disabled("text=Accept suggestion A")  # accepted once
    assert page.evaluate("mammoMark.suggestions()")[0]["accepted"] is True  # no longer drawn dashed
    page.click("#submit")
    pending = _wait(pipeline.claimer.submissions.pending, "the submission")
    claimed = pipeline.claim_submission(pending[0])
    assert claimed is not None
    answer = pipeline.resume(claimed)
    page.wait_for_selector("body[data-answered=true]", timeout=30_000)
    assert (answer.answers, answer.reader, answer.status) == (film_id, "reader1", "classified")
    assert page.inner_text("#answer tbody td:nth-child(4)") == "reader (reader1)"


def _wait(condition: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found
