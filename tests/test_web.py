"""The reader's web app through its API: logins and tokens, every refusal (a clear 4xx, nothing written), a reader's
regions answered through the scan lifecycle exactly once (two readers at once, a crash between 202 and the answer),
with a fake model bundle and the real analyser, pipeline and writer."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from dicomfiles import encode, mammogram
from fakedevice import FAST_HASHER, fake_device
from starlette.testclient import TestClient

import edge_app.web.throttle as throttle_module
from edge_app.config import Config, PathsSection, WebSection
from edge_app.decode import decode_bytes
from edge_app.service.analyse import ModelAnalyser, Sidecar
from edge_app.service.daemon import build_pipeline, journal_path
from edge_app.service.journal import Journal
from edge_app.service.lifecycle import ScanState, new_scan_id, received
from edge_app.service.pipeline import ScanPipeline
from edge_app.service.submissions import SubmissionQueue
from edge_app.web.accounts import AccountStore, TokenInfo
from edge_app.web.app import STATIC, create_app, web_folder
from edge_app.web.guard import CSP, SecurityHeaders, inline_hashes, page_policy
from edge_app.web.throttle import LoginThrottle

PASSWORD = "correct horse battery"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Site:
    config: Config
    client: TestClient
    accounts: AccountStore
    journal: Journal
    pipeline: ScanPipeline
    analyser: ModelAnalyser
    film_id: str
    film: bytes
    clock: FakeClock

    def login(self, user: str = "reader1") -> str:
        response = self.client.post("/api/session", json={"user": user, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return str(response.json()["csrf"])

    def take(self) -> list[Any]:
        """What the daemon's loop does with the submissions waiting: each analysed and written."""
        records = []
        for scan_id in self.pipeline.claimer.submissions.pending():
            claimed = self.pipeline.claim_submission(scan_id)
            if claimed is not None:
                records.append(self.pipeline.resume(claimed))
        return records

    def written(self) -> list[str]:
        """Everything the web app could have written into intake or the audit log."""
        audit = web_folder(self.config) / "audit.jsonl"
        marks = [line for line in audit.read_text().splitlines() if '"mark"' in line] if audit.exists() else []
        return self.pipeline.claimer.submissions.pending() + marks


def _film(seed: int = 3) -> bytes:
    """A 12-bit full-field film, 300 x 400, a bright disc (the "mass") at (200, 150) of radius 30."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(800, 1200, (300, 400)).astype(np.uint16)
    rows, columns = np.ogrid[:300, :400]
    pixels[(rows - 150) ** 2 + (columns - 200) ** 2 <= 30**2] = 3500
    dataset = mammogram(pixels)
    dataset.AccessionNumber = "ACC-7"
    dataset.ImageLaterality = "L"
    dataset.StudyDate = "20261130"
    return encode(dataset)


@pytest.fixture
def site(tmp_path: Path, fake_runtime: None) -> Iterator[Site]:
    device = fake_device(tmp_path)
    film = _film()
    record = device.answer("film.dcm", film)
    assert record.status == "needs_roi" and record.state is ScanState.ARCHIVED
    clock = FakeClock()
    accounts = AccountStore(web_folder(device.config) / "accounts.sqlite3", hasher=FAST_HASHER, clock=clock)
    for name in ("reader1", "reader2"):
        accounts.add_user(name, PASSWORD)
    app = create_app(device.config, accounts, LoginThrottle(attempts=3, window_seconds=60, clock=clock))
    with TestClient(app) as client:
        yield Site(
            device.config,
            client,
            accounts,
            device.journal,
            device.pipeline,
            device.analyser,
            record.scan_id,
            film,
            clock,
        )
    accounts.close()
    device.journal.close()


CIRCLE = {"regions": [{"label": "A", "x": 200, "y": 150, "radius": 30}]}


def _answer_alone(site: Site, regions: dict[str, Any]) -> float:
    """What `mammo-edge once FILM --roi` answers for the same regions: the analyser on the film and a .roi.json."""
    sidecar = Sidecar("film.roi.json", "roi", json.dumps(regions).encode())
    analysis = site.analyser.analyse(site.film, "film.dcm", sidecar)
    return float(analysis.regions[0].probability)


def test_only_healthz_and_the_login_page_are_open(site: Site) -> None:
    health = site.client.get("/healthz")  # open, and says the analysis service (not running here) is down
    assert health.status_code == 503 and health.text == "the analysis service is not running (no heartbeat)\n"
    assert site.client.get("/login").status_code == 200
    for path in ("/api/scans", f"/api/scans/{site.film_id}", f"/api/scans/{site.film_id}/image", "/api/session"):
        response = site.client.get(path)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer", path
        assert response.json() == {"error": "log in, or send a token (Authorization: Bearer ...)"}
    for page in ("/", "/scans", f"/scans/{site.film_id}", "/results/index.html"):
        response = site.client.get(page, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next="), page
    refused = site.client.post(f"/api/scans/{site.film_id}/regions", json=CIRCLE)
    assert refused.status_code == 401 and site.written() == []


def test_a_login_sets_a_strict_session_cookie_and_every_response_its_policy(site: Site) -> None:
    wrong = site.client.post("/api/session", json={"user": "reader1", "password": "wrong password!"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "wrong account name or password"
    unknown = site.client.post("/api/session", json={"user": "nobody", "password": PASSWORD})
    assert unknown.status_code == 401 and unknown.json() == wrong.json()  # no telling which was wrong
    response = site.client.post("/api/session", json={"user": "reader1", "password": PASSWORD})
    assert "; SameSite=strict" in response.headers["set-cookie"]  # as the browsers' own spelling has it
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie  # loopback, no TLS here
    headers = site.client.get("/api/session").headers
    assert headers["content-security-policy"].startswith("default-src 'none'; script-src 'self';")
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
    assert site.client.get("/api/session").json()["user"] == "reader1"
    assert site.client.delete("/api/session", headers={"X-CSRF-Token": response.json()["csrf"]}).status_code == 204
    assert site.client.get("/api/session").status_code == 401


def test_failed_logins_are_rate_limited_per_account_and_address(site: Site) -> None:
    for _ in range(3):
        assert site.client.post("/api/session", json={"user": "reader1", "password": "guess guess!"}).status_code == 401
    limited = site.client.post("/api/session", json={"user": "reader1", "password": PASSWORD})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) == 60  # even the right password
    assert site.client.post("/api/session", json={"user": "reader2", "password": PASSWORD}).status_code == 429
    site.clock.now += 61
    assert site.client.post("/api/session", json={"user": "reader1", "password": PASSWORD}).status_code == 200
    audit = (web_folder(site.config) / "audit.jsonl").read_text()
    assert audit.count('"event": "login failed"') == 3 and audit.count('"event": "login refused"') == 2
    assert PASSWORD not in audit and "guess" not in audit


def test_a_state_changing_request_without_its_csrf_token_is_refused_and_writes_nothing(site: Site) -> None:
    csrf = site.login()
    path = f"/api/scans/{site.film_id}/regions"
    refused = site.client.post(path, json=CIRCLE)
    assert refused.status_code == 403
    assert refused.json() == {"error": "this request lacks its CSRF token (X-CSRF-Token): reload the page"}
    assert site.client.post(path, json=CIRCLE, headers={"X-CSRF-Token": csrf[:-1] + "x"}).status_code == 403
    assert site.client.delete("/api/session").status_code == 403  # logging out is a change too
    assert site.written() == []
    assert site.client.post(path, json=CIRCLE, headers={"X-CSRF-Token": csrf}).status_code == 202


def test_tokens_authenticate_programs_until_revoked(site: Site) -> None:
    token = site.accounts.add_token("ris-bridge")
    path = f"/api/scans/{site.film_id}/regions"
    for header in ({}, {"Authorization": "Bearer mmt_wrong"}, {"Authorization": "Basic cmVhZGVyMQ=="}):
        assert site.client.post(path, json=CIRCLE, headers=header).status_code == 401, header
    assert site.written() == []
    accepted = site.client.post(path, json=CIRCLE, headers={"Authorization": f"Bearer {token}"})
    assert accepted.status_code == 202  # no CSRF token: a program has no cookie to ride on
    site.accounts.revoke_token("ris-bridge")
    assert site.client.get("/api/scans", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    (record,) = site.take()
    assert json.loads((site.config.paths.results / str(record.result_file)).read_text())["regions"][0]["reader"] == (
        "token:ris-bridge"
    )


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "message"),
    [
        ("/api/scans/00000000000000000000/regions", CIRCLE, {}, 404, "not found"),
        ("/api/scans/..%2F..%2Fetc%2Fpasswd/regions", CIRCLE, {}, 404, "not found"),
        ("/api/scans/FILM%00/regions", CIRCLE, {}, 404, "not found"),
        ("/api/scans/%2e%2e/regions", CIRCLE, {}, 404, "not found"),
        ("/api/scans/FILM/regions", {"regions": [{"x": 500, "y": 150, "radius": 10}]}, {}, 422, "lies outside"),
        ("/api/scans/FILM/regions", {"regions": [{"box": [10, 10, 401, 50]}]}, {}, 422, "lies outside"),
        ("/api/scans/FILM/regions", {"regions": []}, {}, 422, "non-empty list"),
        ("/api/scans/FILM/regions", {"regions": [{"x": 1, "y": 1, "radius": 1, "colour": 2}]}, {}, 422, "colour"),
        ("/api/scans/FILM/regions", b"{not json", {}, 422, "not valid JSON"),
        ("/api/scans/FILM/regions", b"x" * 70_000, {}, 413, "at most 65,536 bytes"),
        ("/api/scans/FILM/regions", CIRCLE, {"Content-Type": "text/plain"}, 415, "must be JSON"),
    ],
)
def test_a_bad_submission_is_a_clear_4xx_and_writes_nothing(
    site: Site, path: str, body: Any, headers: dict[str, str], status: int, message: str
) -> None:
    csrf = site.login()
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", "X-CSRF-Token": csrf, **headers}
    response = site.client.post(path.replace("FILM", site.film_id), content=data, headers=sent)
    assert response.status_code == status and message in response.json()["error"], response.text
    assert site.written() == []


def test_the_lists_and_a_scan_show_what_a_reader_needs_and_no_patient_identity(site: Site) -> None:
    site.login()
    listed = site.client.get("/api/scans?status=needs_roi").json()
    assert [scan["id"] for scan in listed["scans"]] == [site.film_id] and listed["before"] is None
    assert site.client.get("/api/scans?status=classified").json()["scans"] == []
    assert site.client.get("/api/scans?status=odd").status_code == 400
    detail = site.client.get(f"/api/scans/{site.film_id}")
    film = detail.json()["film"]
    assert film == {
        "width": 400,
        "height": 300,
        "range": [0.0, 4095.0],
        "window": [2047.5, 4095.0],
        "laterality": "L",
        "view": "CC",
        "study_date": "20261130",
        "accession": "ACC-7",
    }
    assert detail.json()["result"]["status"] == "needs_roi" and detail.json()["scan"]["status"] == "needs_roi"
    assert "PatientName" not in detail.text and "Patient^" not in detail.text


def test_the_film_is_rendered_by_the_devices_decoder_at_any_window(site: Site) -> None:
    site.login()
    path = f"/api/scans/{site.film_id}/image"
    default = cv2.imdecode(np.frombuffer(site.client.get(path).content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(default, decode_bytes(site.film).pixels)  # at its own window: what the model's crops see
    narrow = cv2.imdecode(
        np.frombuffer(site.client.get(f"{path}?center=1000&width=400").content, np.uint8), cv2.IMREAD_UNCHANGED
    )
    assert narrow[150, 200] == 255 and narrow[10, 10] not in (0, 255)  # the mass saturates, the background shows
    for query in ("?center=1000", "?center=x&width=2", "?center=1&width=0", "?center=nan&width=5"):
        assert site.client.get(path + query).status_code == 400, query


def test_a_readers_regions_are_answered_once_through_the_lifecycle_like_a_file_would_be(site: Site) -> None:
    csrf = site.login()
    response = site.client.post(f"/api/scans/{site.film_id}/regions", json=CIRCLE, headers={"X-CSRF-Token": csrf})
    new_id = response.json()["id"]
    assert response.status_code == 202 and response.headers["location"] == f"/api/scans/{new_id}"
    assert site.client.get(f"/api/scans/{new_id}").json()["scan"]["state"] == "submitted"
    (record,) = site.take()
    assert site.take() == [] and site.pipeline.claimer.submissions.pending() == []
    assert record.scan_id == new_id and record.state is ScanState.ARCHIVED and record.answers == site.film_id
    shown = site.client.get(f"/api/scans/{new_id}").json()
    result = shown["result"]
    assert result["answers"] == site.film_id and result["status"] == "classified"
    (region,) = result["regions"]
    assert (region["marked_by"], region["reader"], region["marked_as"]) == ("reader", "reader1", "circle")
    assert region["probability"] == pytest.approx(_answer_alone(site, CIRCLE), abs=1e-6)
    assert [scan["id"] for scan in site.client.get(f"/api/scans/{site.film_id}").json()["answered_by"]] == [new_id]
    archived = site.config.paths.archive
    assert (archived / "film.dcm").read_bytes() == (archived / "film (2).dcm").read_bytes() == site.film
    assert json.loads((archived / "film (2).roi.json").read_text()) == CIRCLE  # the marks kept beside the film
    (mark,) = [json.loads(line) for line in (web_folder(site.config) / "audit.jsonl").read_text().splitlines()[1:]]
    assert (mark["event"], mark["who"], mark["scan"], mark["answer"]) == ("mark", "reader1", site.film_id, new_id)
    assert mark["regions"] == CIRCLE["regions"]


def test_two_readers_marking_one_film_at_once_both_get_their_answer_once(site: Site) -> None:
    clients = [site.client, TestClient(site.client.app)]
    tokens = []
    for client, user in zip(clients, ("reader1", "reader2"), strict=True):
        tokens.append(client.post("/api/session", json={"user": user, "password": PASSWORD}).json()["csrf"])
    regions = [CIRCLE, {"regions": [{"label": "A", "box": [150, 100, 250, 200]}]}]
    ids: list[str] = []
    barrier = threading.Barrier(2)

    def submit(index: int) -> None:
        barrier.wait()
        response = clients[index].post(
            f"/api/scans/{site.film_id}/regions", json=regions[index], headers={"X-CSRF-Token": tokens[index]}
        )
        ids.append(response.json()["id"])

    threads = [threading.Thread(target=submit, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = site.take()
    assert sorted(record.scan_id for record in records) == sorted(ids) and len(set(ids)) == 2
    readers = {record.scan_id: record.reader for record in records}
    assert sorted(readers.values()) == ["reader1", "reader2"]
    results = sorted(site.config.paths.results.glob("film*.json"))
    assert len(results) == 3  # the needs_roi answer and one per reader
    assert len(site.journal.answered_by(site.film_id)) == 2


@pytest.mark.parametrize("stop", ["before the daemon saw it", "after it was recorded", "after it was claimed"])
def test_a_submission_acknowledged_before_a_crash_is_answered_after_the_restart(site: Site, stop: str) -> None:
    csrf = site.login()
    new_id = site.client.post(f"/api/scans/{site.film_id}/regions", json=CIRCLE, headers={"X-CSRF-Token": csrf}).json()[
        "id"
    ]
    claimer = site.pipeline.claimer
    if stop != "before the daemon saw it":
        submission = claimer.submissions.read(new_id)
        assert submission is not None
        record = claimer.receive_submission(submission)
        if stop == "after it was claimed":
            claimer.claim(record)
    site.journal.close()
    journal = Journal(journal_path(site.config))  # the service again, from what is on disk
    pipeline = build_pipeline(site.config, journal, site.analyser)
    pipeline.recover()
    for scan_id in SubmissionQueue(site.config.paths.state).pending():
        claimed = pipeline.claim_submission(scan_id)
        if claimed is not None:
            pipeline.resume(claimed)
    answered = journal.get(new_id)
    assert answered is not None and answered.state is ScanState.ARCHIVED and answered.status == "classified"
    assert SubmissionQueue(site.config.paths.state).pending() == []
    assert [record.scan_id for record in journal.answered_by(site.film_id)] == [new_id]
    site.journal = journal


def test_accounts_refuse_weak_passwords_and_odd_names_and_keep_only_hashes(site: Site, tmp_path: Path) -> None:
    from edge_app.errors import AccessError

    with pytest.raises(AccessError, match="at least 12 characters"):
        site.accounts.add_user("reader3", "short")
    with pytest.raises(AccessError, match="must be 1-64 letters"):
        site.accounts.add_user("../x", PASSWORD)
    with pytest.raises(AccessError, match="already exists"):
        site.accounts.add_user("reader1", PASSWORD)
    token = site.accounts.add_token("pacs")
    stored = (web_folder(site.config) / "accounts.sqlite3").read_bytes()
    assert PASSWORD.encode() not in stored and token.encode() not in stored
    assert oct((web_folder(site.config) / "accounts.sqlite3").stat().st_mode & 0o777) == "0o600"
    site.accounts.remove_user("reader2")
    assert site.accounts.users() == ["reader1"]


def test_a_session_ends_when_idle_or_too_old(site: Site) -> None:
    site.login()
    site.clock.now += 29 * 60
    assert site.client.get("/api/session").status_code == 200  # a request starts the idle time again
    site.clock.now += 29 * 60
    assert site.client.get("/api/session").status_code == 200
    site.clock.now += 31 * 60
    assert site.client.get("/api/session").status_code == 401
    site.login()
    for _ in range(25):  # active all day: still ends 12 hours after the login
        site.clock.now += 29 * 60
    assert site.client.get("/api/session").status_code == 401


def test_network_addresses_need_tls(tmp_path: Path) -> None:
    from edge_app.config import resolve_config
    from edge_app.errors import ConfigError

    config = tmp_path / "config.toml"
    config.write_text('[web]\nbind_address = "0.0.0.0"\n')
    with pytest.raises(ConfigError, match="served over HTTPS only, so set tls_cert and tls_key"):
        resolve_config(config, environ={})
    config.write_text('[web]\nbind_address = "127.0.0.1"\ntls_cert = "/c.pem"\n')
    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        resolve_config(config, environ={})
    config.write_text('[web]\nbind_address = "::1"\n')
    assert resolve_config(config, environ={}).web.bind_address == "::1"
    assert replace(WebSection(), tls_cert="c", tls_key="k").tls_cert == "c"


def test_a_readers_pages_are_the_devices_own_files(site: Site) -> None:
    site.login()
    home = site.client.get("/", follow_redirects=False)
    assert home.status_code == 303 and home.headers["location"] == "/scans"
    for path, name in (("/scans", "scans.html"), (f"/scans/{site.film_id}", "mark.html")):
        page = site.client.get(path)
        assert page.status_code == 200 and page.content == (STATIC / name).read_bytes(), path
    unknown = site.client.get("/scans/not-a-scan-id")
    assert unknown.status_code == 404 and unknown.json() == {"error": "not found: no such scan"}
    wrong_method = site.client.put("/scans")
    assert wrong_method.status_code == 405 and wrong_method.json() == {"error": "PUT is not allowed here"}


def _hash_source(body: bytes) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode() + "'"


def test_a_results_page_is_served_with_its_own_inline_code_allowed_by_hash_and_nothing_outside_the_folder(
    site: Site,
) -> None:
    site.login()
    results = site.config.paths.results
    (results / "page.html").write_bytes(b"<p><style>p{}</style><script>go()</script><script>more()</script></p>")
    page = site.client.get("/results/page.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.content == (results / "page.html").read_bytes()
    policy = page.headers["content-security-policy"]
    scripts = f"script-src 'self' {_hash_source(b'go()')} {_hash_source(b'more()')};"
    assert scripts in policy and f"style-src 'self' {_hash_source(b'p{}')};" in policy
    assert policy.startswith("default-src 'none'; ") and "frame-ancestors 'none'" in policy
    (results / "pictures").mkdir()
    (results / "pictures" / "a.png").write_bytes(b"\x89PNG not really")
    picture = site.client.get("/results/pictures/a.png")
    assert picture.content == b"\x89PNG not really" and picture.headers["content-type"] == "image/png"
    assert picture.headers["content-security-policy"].startswith("default-src 'none'; script-src 'self';")
    (site.config.paths.state / "secret.txt").write_text("not for readers")
    assert site.client.get("/results/../state/secret.txt").status_code == 404  # the client folds the dots away
    for outside in ("..%2Fstate%2Fsecret.txt", "%2E%2E/state/secret.txt", "nope.html", "pictures"):
        refused = site.client.get(f"/results/{outside}")
        assert refused.status_code == 404, outside
        assert refused.json() == {"error": "not found: no such file in the results"}, outside


def test_a_page_without_inline_code_allows_none() -> None:
    assert page_policy(b"<p>plain</p>") == CSP
    assert inline_hashes(b"<style>a{}</style><p><script>x()</script>") == (
        [_hash_source(b"x()")],
        [_hash_source(b"a{}")],
    )


def test_the_login_throttle_tracks_failures_only_and_forgets_the_longest_quiet_key_past_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(throttle_module, "MAX_KEYS", 3)
    clock = FakeClock()
    throttle = LoginThrottle(attempts=1, window_seconds=60, clock=clock)
    for index in range(100):  # asking about made-up names (every login does) tracks nothing
        assert throttle.retry_after([f"user:made-up-{index}"]) is None
    for key in ("user:a", "user:b", "user:c", "user:a"):  # a fails again: b is now the longest quiet
        clock.now += 1
        throttle.failed([key])
    clock.now += 1
    throttle.failed(["user:d"])
    assert throttle.retry_after(["user:b"]) is None
    assert [throttle.retry_after([key]) for key in ("user:a", "user:c", "user:d")] == [59.0, 58.0, 60.0]
    clock.now += 58
    assert throttle.retry_after(["user:a", "user:d"]) == 2.0  # the longest wait of the keys asked about
    clock.now += 2
    assert throttle.retry_after(["user:a", "user:d"]) is None  # a failure counts for the window, no longer


def test_by_default_five_failures_in_fifteen_minutes_hold_a_login_back() -> None:
    """The module's promise: a reader who mistypes four times is never held back; a fifth failure is."""
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(4):
        throttle.failed(["user:reader"])
        clock.now += 10
    assert throttle.retry_after(["user:reader"]) is None
    throttle.failed(["user:reader"])
    assert throttle.retry_after(["user:reader"]) == 900.0 - 40


def test_the_tokens_list_says_when_each_was_made_used_and_revoked(site: Site) -> None:
    site.clock.now = 2000.0
    token = site.accounts.add_token("ris-bridge")
    site.accounts.add_token("archive")
    site.clock.now = 2100.0
    assert site.client.get("/api/scans", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    site.clock.now = 2200.0
    site.accounts.revoke_token("archive")
    assert site.accounts.tokens() == [
        TokenInfo("archive", 2000.0, 2200.0, None),
        TokenInfo("ris-bridge", 2000.0, None, 2100.0),
    ]


def test_a_submission_the_daemon_cannot_read_is_set_aside_for_a_person_not_lost(site: Site) -> None:
    scan_id = new_scan_id()
    queue = SubmissionQueue(site.config.paths.state)
    queue.folder.mkdir(parents=True, exist_ok=True)
    (queue.folder / f"{scan_id}.json").write_bytes(b'{"scan_id": "half a file')
    assert site.take() == []
    assert queue.pending() == [] and site.journal.get(scan_id) is None
    kept = site.config.paths.quarantine / f"{scan_id}.submission.json"
    assert kept.read_bytes() == b'{"scan_id": "half a file'


def _rejected_scan(site: Site) -> str:
    """A scan the device refused (it is no image): finished, with a reason and no film to mark."""
    (site.config.paths.inbox / "bad.png").write_bytes(b"not an image at all")
    record = site.pipeline.take(site.config.paths.inbox / "bad.png")
    assert record.rejected
    return record.scan_id


def test_a_scan_is_summarised_exactly_as_the_journal_has_it(site: Site) -> None:
    rejected_id = _rejected_scan(site)
    site.login()
    film, refused = site.journal.get(site.film_id), site.journal.get(rejected_id)
    assert film is not None and refused is not None and refused.failure is not None
    listed = site.client.get("/api/scans").json()
    assert listed == {
        "scans": [
            {
                "id": rejected_id,
                "input": "bad.png",
                "state": refused.state.value,
                "status": "rejected",
                "received": refused.received,
                "updated": refused.updated,
                "label": None,
                "probability": None,
                "result": refused.result_file,
                "answers": None,
                "reader": None,
                "reason": refused.failure.reason,
            },
            {
                "id": site.film_id,
                "input": "film.dcm",
                "state": "archived",
                "status": "needs_roi",
                "received": film.received,
                "updated": film.updated,
                "label": None,
                "probability": None,
                "result": film.result_file,
                "answers": None,
                "reader": None,
                "reason": None,
            },
        ],
        "before": None,
    }
    first = site.client.get("/api/scans?limit=1").json()
    assert [scan["id"] for scan in first["scans"]] == [rejected_id] and first["before"] == refused.received
    rest = site.client.get(f"/api/scans?limit=1&before={first['before']}").json()
    assert [scan["id"] for scan in rest["scans"]] == [site.film_id]
    for query, message in (
        ("status=odd", "status must be one of needs_roi, classified, rejected, waiting"),
        ("limit=x", "limit must be an integer and before a time (the last scan's received)"),
        ("before=yesterday", "limit must be an integer and before a time (the last scan's received)"),
    ):
        refused_query = site.client.get(f"/api/scans?{query}")
        assert refused_query.status_code == 400 and refused_query.json()["error"].startswith(message), query


def test_who_is_asking_is_answered_exactly_for_a_reader_and_a_program(site: Site) -> None:
    csrf = site.login()
    assert site.client.get("/api/session").json() == {"user": "reader1", "kind": "reader", "csrf": csrf}
    token = site.accounts.add_token("ris-bridge")
    program = TestClient(site.client.app)
    for scheme in ("Bearer", "bearer", "BEARER"):
        answer = program.get("/api/session", headers={"Authorization": f"{scheme}  {token} "})
        assert answer.json() == {"user": "ris-bridge", "kind": "token", "csrf": None}, scheme
    assert program.get("/api/session", headers={"Authorization": f"Token {token}"}).status_code == 401


def test_a_mark_is_acknowledged_with_the_id_of_its_answer_which_shows_as_submitted_until_taken(site: Site) -> None:
    csrf = site.login()
    accepted = site.client.post(f"/api/scans/{site.film_id}/regions", json=CIRCLE, headers={"X-CSRF-Token": csrf})
    new_id = accepted.json()["id"]
    assert accepted.status_code == 202 and accepted.json() == {"id": new_id}
    assert accepted.headers["location"] == f"/api/scans/{new_id}"
    pending = site.client.get(f"/api/scans/{new_id}").json()
    assert pending == {"scan": {"id": new_id, "state": "submitted"}, "result": None, "answered_by": []}
    assert site.client.get("/api/scans/ffffffffffffffffffffffff").status_code == 404
    (record,) = site.take()
    answered = site.client.get(f"/api/scans/{site.film_id}").json()
    assert [scan["id"] for scan in answered["answered_by"]] == [record.scan_id] == [new_id]
    assert answered["answered_by"][0]["answers"] == site.film_id and answered["answered_by"][0]["reader"] == "reader1"


def test_login_refusals_and_the_session_cookie_are_exact(site: Site) -> None:
    for body in ({"user": "reader1"}, ["reader1", PASSWORD], "reader1"):
        refused = site.client.post("/api/session", json=body)
        assert refused.status_code == 400, body
        assert refused.json() == {"error": 'the body must be {"user": ..., "password": ...}'}, body
    response = site.client.post("/api/session", json={"user": "reader1", "password": PASSWORD})
    assert response.json() == {"user": "reader1", "csrf": response.json()["csrf"]}
    cookie = response.headers["set-cookie"].lower()
    assert "max-age=43200" in cookie and "path=/" in cookie  # the session's 12 hours at most
    logout = site.client.delete("/api/session", headers={"X-CSRF-Token": response.json()["csrf"]})
    cleared = logout.headers["set-cookie"].lower()
    assert cleared.startswith('mammo_session="";') and "max-age=0" in cleared and "path=/" in cleared
    assert "httponly" in cleared and "samesite=strict" in cleared and "secure" not in cleared
    for _ in range(3):
        site.client.post("/api/session", json={"user": "reader2", "password": "guess guess!"})
    limited = site.client.post("/api/session", json={"user": "reader2", "password": PASSWORD})
    assert limited.json() == {"error": "too many failed logins: try again in 60 s"}
    assert limited.headers["retry-after"] == "60"


def test_every_security_event_is_one_exact_audit_line(site: Site) -> None:
    csrf = site.login()
    site.client.post(f"/api/scans/{site.film_id}/regions", json=CIRCLE, headers={"X-CSRF-Token": csrf})
    site.client.delete("/api/session", headers={"X-CSRF-Token": csrf})
    site.client.post("/api/session", json={"user": "reader1", "password": "guess guess!"})
    for _ in range(2):
        site.client.post("/api/session", json={"user": "reader2", "password": "guess guess!"})
    site.client.post("/api/session", json={"user": "reader2", "password": PASSWORD})  # the address's third failure
    lines = (web_folder(site.config) / "audit.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert all(line == json.dumps(entry, sort_keys=True) for line, entry in zip(lines, entries, strict=True))
    assert len({entry["id"] for entry in entries}) == len(entries)
    for entry in entries:
        assert len(entry.pop("id")) == 16 and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry.pop("time"))
    answer = entries[1].pop("answer")
    assert entries == [
        {"event": "login", "who": "reader1", "address": "testclient"},
        {"event": "mark", "who": "reader1", "scan": site.film_id, "regions": CIRCLE["regions"]},
        {"event": "logout", "who": "reader1"},
        {"event": "login failed", "who": "reader1", "address": "testclient"},
        *[{"event": "login failed", "who": "reader2", "address": "testclient"}] * 2,
        {"event": "login refused", "who": "reader2", "address": "testclient", "reason": "too many failed attempts"},
    ]
    assert SubmissionQueue(site.config.paths.state).pending() == [answer]


def test_a_film_that_cannot_be_shown_or_marked_is_a_clear_409_and_a_bad_window_a_400(site: Site) -> None:
    csrf = site.login()
    rejected_id = _rejected_scan(site)
    shown = site.client.get(f"/api/scans/{rejected_id}/image")
    assert shown.status_code == 409
    assert shown.json() == {"error": "this scan has no archived film to show (refused, or not finished yet)"}
    marked = site.client.post(f"/api/scans/{rejected_id}/regions", json=CIRCLE, headers={"X-CSRF-Token": csrf})
    assert marked.status_code == 409
    assert marked.json() == {"error": "regions can be marked only on an answered film kept in the archive"}
    path = f"/api/scans/{site.film_id}/image"
    for query, message in (
        ("center=1000", "a window needs both center and width, as numbers"),
        ("width=400", "a window needs both center and width, as numbers"),
        ("center=a&width=400", "a window needs both center and width, as numbers"),
        ("center=1000&width=0", "the window's center must be finite and its width > 0"),
        ("center=inf&width=400", "the window's center must be finite and its width > 0"),
        ("center=1000&width=nan", "the window's center must be finite and its width > 0"),
    ):
        refused = site.client.get(f"{path}?{query}")
        assert refused.status_code == 400 and refused.json() == {"error": message}, query
    picture = site.client.get(path)
    assert picture.headers["content-type"] == "image/png" and picture.headers["cache-control"] == "private, no-store"
    film = site.journal.get(site.film_id)
    assert film is not None and film.result_file is not None
    (site.config.paths.results / film.result_file).unlink()
    unknown = site.client.post(f"/api/scans/{site.film_id}/regions", json=CIRCLE, headers={"X-CSRF-Token": csrf})
    assert unknown.status_code == 409
    assert unknown.json() == {"error": "the scan's result cannot be read, so its size is unknown"}
    assert site.written() == [] or all('"mark"' not in line for line in site.written())


def test_the_login_pages_files_are_served_to_anyone(site: Site) -> None:
    for name in ("app.css", "login.js", "common.js"):
        served = site.client.get(f"/static/{name}")
        assert served.status_code == 200 and served.content == (STATIC / name).read_bytes(), name
    assert site.client.get("/login").content == (STATIC / "login.html").read_bytes()


def test_under_tls_every_response_asks_for_https_and_the_cookie_is_secure(tmp_path: Path) -> None:
    paths = PathsSection(*(tmp_path / name for name in ("inbox", "results", "archive", "quarantine", "state", "out")))
    web = WebSection(enabled=True, tls_cert="cert.pem", tls_key="key.pem", login_attempts=2, login_window_minutes=2)
    config = Config(paths=paths, web=web)
    accounts = AccountStore(web_folder(config) / "accounts.sqlite3", hasher=FAST_HASHER)
    accounts.add_user("reader1", PASSWORD)
    with TestClient(create_app(config, accounts), base_url="https://testserver") as client:
        assert client.get("/healthz").headers["strict-transport-security"] == "max-age=31536000"
        response = client.post("/api/session", json={"user": "reader1", "password": PASSWORD})
        assert "secure" in response.headers["set-cookie"].lower()
        logout = client.delete("/api/session", headers={"X-CSRF-Token": response.json()["csrf"]})
        assert "secure" in logout.headers["set-cookie"].lower()
        for _ in range(2):  # the configured attempts and window, when no throttle is given
            client.post("/api/session", json={"user": "reader1", "password": "guess guess!"})
        limited = client.post("/api/session", json={"user": "reader1", "password": PASSWORD})
        assert limited.status_code == 429 and limited.headers["retry-after"] == "120"
    accounts.close()


def test_every_response_carries_the_same_protective_headers(site: Site) -> None:
    for path in ("/healthz", "/login", "/api/scans", "/nowhere"):
        headers = site.client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer", path
        assert headers["cache-control"] == "no-store" and headers["cross-origin-opener-policy"] == "same-origin"
        assert headers["content-security-policy"] == CSP and "strict-transport-security" not in headers, path


def _read(headers: dict[str, str], chunks: list[bytes], limit: int = 10) -> bytes | int:
    """`read_body` on a raw request: the bytes, or the refusal's status."""
    from starlette.requests import Request

    from edge_app.web.guard import read_body

    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    body = asyncio.run(read_body(Request(scope, receive), limit))
    return body if isinstance(body, bytes) else body.status_code


def test_a_body_is_read_only_when_it_says_json_and_only_up_to_its_limit() -> None:
    assert _read({"content-type": "application/json"}, [b"{}", b"[1]"]) == b"{}[1]"
    assert _read({"content-type": "Application/JSON; charset=utf-8"}, [b"0123456789"]) == b"0123456789"  # the limit
    assert _read({"content-type": "application/json", "content-length": "10"}, [b"0123456789"]) == b"0123456789"
    assert _read({"content-type": "text/plain"}, [b"{}"]) == 415
    assert _read({}, [b"{}"]) == 415
    assert _read({"content-type": "application/json", "content-length": "11"}, [b"{}"]) == 413
    assert _read({"content-type": "application/json", "content-length": "ten"}, [b"{}"]) == 413
    assert _read({"content-type": "application/json"}, [b"012345", b"67890"]) == 413  # streamed past it


def test_accounts_tokens_and_sessions_keep_their_exact_rules(tmp_path: Path) -> None:
    from edge_app.errors import AccessError

    accounts = AccountStore(tmp_path / "new" / "accounts.sqlite3", hasher=FAST_HASHER)
    assert (accounts.idle_seconds, accounts.max_seconds) == (30 * 60, 12 * 3600)
    accounts.add_user("reader1", "x" * 12)  # exactly the shortest allowed
    token = accounts.add_token("pacs")
    assert token.startswith("mmt_") and len(token) == 4 + 43  # 32 random bytes, URL-safe
    cookie, session = accounts.open_session("reader1")
    assert len(cookie) == 43 and len(session.csrf) == 43 and session.user == "reader1"
    assert accounts.session(cookie) == session
    for call, message in (
        (lambda: accounts.add_token("pacs"), "a token named 'pacs' exists already (revoke it, or choose another name)"),
        (lambda: accounts.revoke_token("nobody"), "no active token named 'nobody'"),
        (lambda: accounts.remove_user("nobody"), "no account named 'nobody'"),
        (lambda: accounts.add_user("a b", PASSWORD), "account name"),
        (lambda: accounts.add_token("a/b"), "token name"),
    ):
        with pytest.raises(AccessError, match=re.escape(message)):
            call()
    accounts.remove_user("reader1")
    assert accounts.session(cookie) is None  # logged out everywhere with the account
    accounts.close()


@pytest.mark.parametrize("tls", [False, True])
def test_every_response_gets_the_security_headers_in_lower_case_and_keeps_its_own_policy(tls: bool) -> None:
    """ASGI servers pass header names as given and HTTP/2 forbids upper case: the middleware's are lower case."""
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        own = [(b"content-security-policy", b"default-src 'self'")] if scope["path"] == "/own" else []
        start = {"type": "http.response.start", "status": 200, "headers": own}
        if scope["path"] == "/bare":
            del start["headers"]  # ASGI makes the headers optional
        await send(start)
        await send({"type": "http.response.body", "body": b""})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    middleware = SecurityHeaders(app, tls=tls)
    for path in ("/plain", "/own", "/bare"):
        asyncio.run(middleware({"type": "http", "path": path}, None, send))  # type: ignore[arg-type]
    expected = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cache-control", b"no-store"),
        (b"cross-origin-opener-policy", b"same-origin"),
        *([(b"strict-transport-security", b"max-age=31536000")] if tls else []),
    ]
    plain, own, bare = (message["headers"] for message in sent if message["type"] == "http.response.start")
    assert plain == bare == [*expected, (b"content-security-policy", CSP.encode())]
    assert own == [(b"content-security-policy", b"default-src 'self'"), *expected]


def test_an_archived_film_that_cannot_be_read_is_a_clear_409_and_the_scan_shows_no_facts(site: Site) -> None:
    """The film in the archive damaged after its answer: its picture is refused with the decoder's reason, its scan
    still listed, without the film's facts; a window of width 1 is a window; an unknown path names what is missing."""
    site.login()
    film = site.journal.get(site.film_id)
    assert film is not None and film.settled_name is not None
    path = f"/api/scans/{site.film_id}/image"
    assert site.client.get(f"{path}?center=1000&width=1").status_code == 200  # a threshold at 999.5
    archived = site.config.paths.archive / film.settled_name
    archived.write_bytes(b"DICM" + bytes(200))  # not a film any more
    shown = site.client.get(f"{path}?center=900&width=300")  # a window not asked for before: nothing cached
    assert shown.status_code == 409
    assert shown.json()["error"].startswith("the archived film cannot be shown: ")
    detail = site.client.get(f"/api/scans/{site.film_id}").json()
    assert detail["film"] is None and detail["scan"]["id"] == site.film_id
    missing = site.client.get("/api/nothing-here")
    assert missing.status_code == 404 and missing.json() == {"error": "not found: no such scan, page or file"}


def test_a_submission_whose_film_left_the_archive_ends_vanished_and_leaves_the_queue(site: Site) -> None:
    """The film a reader marked is gone from the archive (removed by hand) before the daemon takes the marks: the
    answer's record says so (VANISHED) and the submission is not retried forever."""
    csrf = site.login()
    answer_id = site.client.post(
        f"/api/scans/{site.film_id}/regions", json=CIRCLE, headers={"X-CSRF-Token": csrf}
    ).json()["id"]
    film = site.journal.get(site.film_id)
    assert film is not None and film.settled_name is not None
    (site.config.paths.archive / film.settled_name).unlink()
    (taken,) = site.take()
    assert taken.scan_id == answer_id and taken.state is ScanState.VANISHED
    assert site.pipeline.claimer.submissions.pending() == []
    stored = site.journal.get(answer_id)
    assert stored is not None and stored.state is ScanState.VANISHED and stored.answers == site.film_id


def test_the_scans_list_filters_refused_and_unfinished_scans_and_the_journal_names_an_unknown_filter(
    site: Site,
) -> None:
    site.login()
    rejected_id = _rejected_scan(site)
    waiting = site.journal.insert(received("arriving.png"))  # received, not finished
    listed = {
        status: [scan["id"] for scan in site.client.get(f"/api/scans?status={status}").json()["scans"]]
        for status in ("rejected", "waiting", "needs_roi")
    }
    assert listed == {"rejected": [rejected_id], "waiting": [waiting.scan_id], "needs_roi": [site.film_id]}
    with pytest.raises(ValueError, match=r"^unknown status 'odd'$"):
        site.journal.listed("odd", 10)


def test_the_submission_queue_makes_its_folder_removes_once_and_names_a_bad_id(tmp_path: Path) -> None:
    from edge_app.errors import IngestError
    from edge_app.service.submissions import Submission

    queue = SubmissionQueue(tmp_path / "state" / "not-yet")  # its folder and the ones above made on the first put
    scan_id = new_scan_id()
    submission = Submission(scan_id, new_scan_id(), "film.dcm", "film.dcm", CIRCLE, "reader1", 1.5)
    queue.put(submission)
    assert queue.pending() == [scan_id] and queue.read(scan_id) == submission
    written = (queue.folder / f"{scan_id}.json").read_bytes()
    assert written == (json.dumps(asdict(submission), sort_keys=True) + "\n").encode()  # keys in order, one line
    queue.remove(scan_id)
    queue.remove(scan_id)  # taken twice (a restart between the claim and the removal): nothing to remove
    assert queue.pending() == []
    with pytest.raises(IngestError) as refused:
        queue.read("../x")
    assert str(refused.value) == "'../x' is not a scan id"
    (queue.folder / f"{scan_id}.json").write_bytes(written.replace(b'"submitted": 1.5', b'"submitted": "soon"'))
    with pytest.raises(IngestError) as unreadable:
        queue.read(scan_id)
    assert str(unreadable.value) == (
        "a reader submission cannot be read (ValueError: could not convert string to float: 'soon')"
    )
    kept = queue.set_aside(scan_id, tmp_path / "quarantine" / "submissions")  # the folders made as needed
    assert kept == tmp_path / "quarantine" / "submissions" / f"{scan_id}.submission.json" and kept.is_file()


def test_a_successful_login_clears_the_accounts_failures_and_not_the_addresss(site: Site) -> None:
    throttle = site.client.app.state.web.throttle  # type: ignore[attr-defined]
    for _ in range(2):
        site.client.post("/api/session", json={"user": "reader1", "password": "guess guess!"})
    assert site.client.post("/api/session", json={"user": "reader1", "password": PASSWORD}).status_code == 200
    site.client.post("/api/session", json={"user": "reader1", "password": "guess guess!"})
    assert throttle.retry_after(["user:reader1"]) is None  # one failure since the login counts, not three
    assert throttle.retry_after(["address:testclient"]) == 60  # the address's three stay: guessing across accounts


def test_a_logout_ends_the_session_on_the_device_not_only_in_the_browser(site: Site) -> None:
    csrf = site.login()
    cookie = site.client.cookies["mammo_session"]
    assert site.client.delete("/api/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    site.client.cookies.set("mammo_session", cookie)  # the old cookie, kept by a copy of the browser's
    assert site.client.get("/api/session").status_code == 401


def test_an_unfinished_scan_shows_no_result_yet_and_an_unknown_one_is_a_404(site: Site) -> None:
    site.login()
    record = site.journal.insert(received("arriving.png"))
    record = site.journal.advance(record, ScanState.CLAIMED)
    record = site.journal.advance(record, ScanState.ANALYSED, result_stem="arriving", status="classified")
    assert record.result_file is not None  # named already, written only when the scan finishes
    detail = site.client.get(f"/api/scans/{record.scan_id}").json()
    assert detail["result"] is None and detail["scan"]["result"] is None and detail["scan"]["state"] == "analysed"
    unknown = site.client.get(f"/api/scans/{new_scan_id()}")
    assert unknown.status_code == 404 and unknown.json() == {"error": "not found: no such scan"}


def test_a_body_that_is_not_json_or_too_long_is_refused_in_words(site: Site) -> None:
    not_json = site.client.post("/api/session", content=b"user=reader1", headers={"content-type": "text/plain"})
    assert not_json.status_code == 415
    assert not_json.json() == {"error": "the body must be JSON (Content-Type: application/json)"}
    long = site.client.post(
        "/api/session", content=b"{" + b" " * 5000 + b"}", headers={"content-type": "application/json"}
    )
    assert long.status_code == 413 and long.json() == {"error": "the body may be at most 4,096 bytes"}
    streamed = site.client.post(  # chunked, no Content-Length: counted as it comes, and cut at the limit
        "/api/session", content=iter([b"{", b" " * 4096, b"}"]), headers={"content-type": "application/json"}
    )
    assert "content-length" not in streamed.request.headers
    assert streamed.status_code == 413 and streamed.json() == {"error": "the body may be at most 4,096 bytes"}


def test_the_app_reads_films_under_the_devices_pixel_limit_and_keeps_its_audit_as_configured(
    tmp_path: Path, fake_runtime: None
) -> None:
    device = fake_device(tmp_path)
    base = device.config
    config = replace(base, ingest=replace(base.ingest, max_pixels=12_345), log=replace(base.log, audit_max_mb=0.5))
    accounts = AccountStore(web_folder(config) / "accounts.sqlite3", hasher=FAST_HASHER)
    web = create_app(config, accounts).state.web
    assert (web.films.archive, web.films.max_pixels) == (config.paths.archive, 12_345)
    assert (web.audit.path, web.audit.max_bytes) == (web_folder(config) / "audit.jsonl", 2**19)
    web.journal.close()
    accounts.close()
    device.journal.close()


def test_a_submission_already_recorded_is_left_to_recovery(site: Site) -> None:
    csrf = site.login()
    reply = site.client.post(f"/api/scans/{site.film_id}/regions", json=CIRCLE, headers={"X-CSRF-Token": csrf})
    new_id = reply.json()["id"]
    submission = site.pipeline.claimer.submissions.read(new_id)
    assert submission is not None
    site.pipeline.claimer.receive_submission(submission)  # recorded; then the service stopped
    assert site.pipeline.claim_submission(new_id) is None  # not answered twice: recovery drives that record
    recorded = site.journal.get(new_id)
    assert recorded is not None and recorded.state is not ScanState.ARCHIVED
