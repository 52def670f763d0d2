"""The web app and the daemon as the device runs them, each its own process in the TensorFlow-free device venv, over
the CI bundle. In a real browser (Debian's Chromium through Playwright) a reader logs in, draws a circle around a
synthetic film's mass with the mouse and submits; the answer appears, and it is what `mammo-edge once FILM --roi`
answers for the same region; the same with the keyboard alone. And a submission acknowledged while the daemon is
down, or killed right after, is answered once when it is back."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chromium import watched_page
from conftest import REPO, edge_python, shipped_variant, write_daemon_config
from dicomnode import free_port

pytestmark = pytest.mark.slow
PASSWORD = "a reader's long password"
SCREENSHOT = REPO / "docs" / "marking-view.png"


def _wait(condition: Callable[[], Any], timeout: float = 60, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Device:
    root: Path
    config: Path
    python: str
    url: str
    film: Path
    mass: dict[str, float]
    processes: list[subprocess.Popen[bytes]]

    def edge(self, *arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        command = [self.python, "-m", "edge_app.cli", *arguments]
        return subprocess.run(command, input=stdin, capture_output=True, text=True, check=False, cwd=REPO)

    def start(self, command: str) -> subprocess.Popen[bytes]:
        """`mammo-edge run` or `serve`, once it says it is ready."""
        log = self.root / f"{command}-{len(self.processes)}.log"
        with log.open("w") as handle:
            process = subprocess.Popen(
                [self.python, "-m", "edge_app.cli", command, "--config", str(self.config)],
                cwd=REPO,
                stdout=handle,
                stderr=handle,
            )
        self.processes.append(process)
        line = "ready:" if command == "run" else "serving the web app"
        _wait(lambda: line in log.read_text(), what=f"`mammo-edge {command}`")
        return process

    def logs(self) -> str:
        return "".join(path.read_text() for path in sorted(self.root.glob("*.log")))

    def api(self, path: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            self.url + path,
            None if body is None else json.dumps(body).encode(),
            method="GET" if body is None else "POST",
        )
        request.add_header("Authorization", f"Bearer {token}")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), json.loads(response.read())

    def result(self, scan_id: str) -> dict[str, Any]:
        journal = self.root / "results"
        for path in journal.glob("*.json"):
            document = json.loads(path.read_text())
            if isinstance(document, dict) and document.get("id") == scan_id:
                return document
        return {}


@pytest.fixture
def device(bundle: Path, tmp_path: Path) -> Iterator[Device]:
    """A device serving one synthetic film answered needs_roi, with a reader account."""
    from mammo_train.films import generate_films

    python = edge_python("MAMMO_TEST_EDGE_PYTHON")
    root = tmp_path / "device"
    config = write_daemon_config(root, bundle, variant=shipped_variant(bundle), settle=0.2)
    port = free_port()
    with config.open("a") as handle:
        handle.write(f'\n[web]\nenabled = true\nbind_address = "127.0.0.1"\nport = {port}\n')
    (film,) = generate_films(tmp_path / "films", 1, 64, seed=4)
    mass = json.loads(film.with_suffix("").with_suffix(".roi.json").read_text())["regions"][0]
    device = Device(root, config, python, f"http://127.0.0.1:{port}", film, mass, [])
    added = device.edge("web-user", "add", "reader1", "--password-file", "-", "--config", str(config), stdin=PASSWORD)
    assert added.returncode == 0, added.stderr
    try:
        device.start("serve")
        device.start("run")
        shutil.copy(film, root / "inbox" / film.name)
        _wait(lambda: list((root / "results").glob("film_000.json")), what="the film's needs_roi answer")
        yield device
    finally:
        for process in device.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                assert process.wait(30) == 0, device.logs()


@pytest.fixture
def page(device: Device) -> Iterator[Any]:
    with watched_page() as opened:
        yield opened


def _log_in_and_open_the_film(page: Any, device: Device) -> None:
    page.goto(f"{device.url}/scans")
    assert page.url.startswith(f"{device.url}/login")  # no page without a login
    page.fill("#user", "reader1")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{device.url}/scans")
    page.click("text=Mark regions")
    page.wait_for_selector("body[data-loaded=true]")
    page.evaluate("document.getElementById('canvas').scrollIntoView()")  # the whole film in the window


def _once(device: Device, regions: dict[str, Any], tmp_path: Path) -> float:
    """`mammo-edge once FILM --roi` with the regions the page submitted: the answer without the web app."""
    from edge_app.config import resolve_config

    roi = tmp_path / "marked.roi.json"
    roi.write_text(json.dumps(regions))
    model = resolve_config(device.config, environ={}).model
    out = tmp_path / "once"
    arguments = ["--model", str(model.bundle), "--variant", model.variant, "--threads", "1", "--results", str(out)]
    done = device.edge("once", str(device.film), "--roi", str(roi), *arguments)
    assert done.returncode == 0, done.stderr
    return float(json.loads((out / "film_000.json").read_text())["regions"][0]["probability"])


def test_a_reader_draws_a_circle_with_the_mouse_and_gets_the_answer(page: Any, device: Device, tmp_path: Path) -> None:
    _log_in_and_open_the_film(page, device)
    mass = device.mass
    centre = page.evaluate(f"mammoMark.toClient({mass['x']}, {mass['y']})")
    edge = page.evaluate(f"mammoMark.toClient({mass['x'] + mass['radius']}, {mass['y']})")
    page.mouse.move(centre["x"], centre["y"])
    page.mouse.down()
    page.mouse.move(edge["x"], edge["y"], steps=5)
    page.mouse.up()
    marked = page.evaluate("mammoMark.document()")
    (region,) = marked["regions"]
    assert region["label"] == "A" and abs(region["x"] - mass["x"]) <= 2 and abs(region["y"] - mass["y"]) <= 2
    assert abs(region["radius"] - mass["radius"]) <= 3
    page.click("#submit")
    page.wait_for_selector("body[data-answered=true]", timeout=60_000)
    answer_id = page.evaluate("document.body.dataset.answer")
    result = device.result(answer_id)
    (answered,) = result["regions"]
    assert (answered["marked_by"], answered["reader"], result["answers"]) == ("reader", "reader1", _film_id(device))
    shown = float(page.inner_text("#answer td.probability"))
    assert shown == pytest.approx(answered["probability"], abs=1e-6)
    assert answered["probability"] == pytest.approx(_once(device, marked, tmp_path), abs=1e-6)
    if os.environ.get("MAMMO_WRITE_SCREENSHOTS"):  # docs/marking-view.png: the view with its answer
        page.set_viewport_size({"width": 1280, "height": 760})
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SCREENSHOT), full_page=True)


def _film_id(device: Device) -> str:
    document = json.loads((device.root / "results" / "film_000.json").read_text())
    return str(document["id"])


def test_the_keyboard_alone_marks_moves_resizes_deletes_and_submits(page: Any, device: Device) -> None:
    _log_in_and_open_the_film(page, device)
    page.focus("#canvas")
    assert page.evaluate("document.activeElement.id") == "canvas"
    for key in (
        "n",
        "n",
        "Delete",
        "ArrowRight",
        "Shift+ArrowDown",
        "]",
        "]",
    ):  # two regions, one deleted, the other moved and grown
        page.keyboard.press(key)
    (region,) = page.evaluate("mammoMark.document()")["regions"]
    assert region["label"] == "A"
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-answered=true]", timeout=60_000)
    result = device.result(page.evaluate("document.body.dataset.answer"))
    assert result["status"] == "classified" and result["regions"][0]["marked_by"] == "reader"
    assert result["regions"][0]["box"] != [0, 0, 0, 0]


@pytest.mark.parametrize("stop", ["down when it was acknowledged", "killed right after the 202"])
def test_a_submission_acknowledged_is_answered_once_after_the_daemon_comes_back(device: Device, stop: str) -> None:
    token = device.edge("web-token", "add", "bridge", "--config", str(device.config)).stdout.strip().splitlines()[-1]
    film = _film_id(device)
    daemon = device.processes[-1]
    if stop == "down when it was acknowledged":
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    status, answer = device.api(f"/api/scans/{film}/regions", token, {"regions": [{"x": 300, "y": 400, "radius": 30}]})
    assert status == 202
    if stop == "killed right after the 202":
        daemon.kill()
        daemon.wait(30)
    device.start("run")
    _wait(lambda: device.result(answer["id"]), what="the answer after the restart")
    # the result is written before its film settles: the scan's record reaches the lifecycle's end soon after
    _wait(lambda: device.api(f"/api/scans/{answer['id']}", token)[1]["scan"]["state"] == "archived", what="archived")
    results = [json.loads(path.read_text()) for path in (device.root / "results").glob("film_000*.json")]
    assert sorted(document["id"] for document in results) == sorted([film, answer["id"]])  # once, and nothing else
