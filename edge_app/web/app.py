"""The reader's web app (Starlette): the results pages, the list of films waiting for a region, the marking view,
and the JSON API they use.

It reads the journal and the results, and writes only reader submissions (`SubmissionQueue`), which the daemon
answers like any other arrival: the web app never analyses a scan. A submission is durable before it is answered
``202`` with the id of the record that will carry the answer.

API (JSON; ``docs/web.md``):

- ``POST /api/session`` ``{"user", "password"}``: log in (a session cookie, and the CSRF token in the body);
  ``GET`` says who is logged in; ``DELETE`` logs out.
- ``GET /api/scans?status=needs_roi|classified|rejected|waiting&limit=N&before=T``: scans, newest first.
- ``GET /api/scans/{id}``: its record, its result document once written, the film's facts, later answers to it.
- ``GET /api/scans/{id}/image[?center=C&width=W]``: the film as PNG, at the decoder's window or at C/W.
- ``POST /api/scans/{id}/regions`` with a ``.roi.json`` document: ``202 {"id": NEW_ID}``.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from edge_app.config import Config
from edge_app.errors import InputImageError, RegionError
from edge_app.regions import MAX_ROI_BYTES, parse_sidecar
from edge_app.service.audit import AuditLog
from edge_app.service.daemon import journal_path
from edge_app.service.health import METRICS, loop_health
from edge_app.service.journal import Journal
from edge_app.service.lifecycle import ScanRecord, ScanState, is_scan_id, new_scan_id
from edge_app.service.submissions import Submission, SubmissionQueue
from edge_app.web.accounts import AccountStore
from edge_app.web.films import FilmReader
from edge_app.web.guard import (
    SESSION_COOKIE,
    Principal,
    SecurityHeaders,
    cookie_arguments,
    error,
    guarded,
    page_policy,
    read_body,
)
from edge_app.web.throttle import LoginThrottle

log = logging.getLogger(__name__)
STATUSES = ("needs_roi", "classified", "rejected", "waiting")
MAX_LOGIN_BYTES = 4096
MAX_LIST = 200
WEB_STATE = "web"


def web_folder(config: Config) -> Path:
    """Where the web app keeps its accounts, tokens, sessions and audit log."""
    return config.paths.state / WEB_STATE


@dataclass
class WebState:
    """What the handlers share, built once from the configuration."""

    config: Config
    accounts: AccountStore
    journal: Journal
    submissions: SubmissionQueue
    films: FilmReader
    throttle: LoginThrottle
    audit: AuditLog
    tls: bool
    audit_lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, event: str, who: str, **details: Any) -> None:
        """One line per security event (logins, marks) in ``<state>/web/audit.jsonl``: who, when, what."""
        entry_id = secrets.token_hex(8)  # each event its own line, however alike two are
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        entry = {"id": entry_id, "time": stamp, "event": event, "who": who, **details}
        with self.audit_lock:
            self.audit.append_once(json.dumps(entry, sort_keys=True) + "\n", f'"id": "{entry_id}"')


def _state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


STATIC = Path(__file__).with_name("static")


def _static(name: str) -> Path:
    return STATIC / name


def summary(record: ScanRecord) -> dict[str, Any]:
    """A scan as the list and the page show it (the result document has the rest)."""
    return {
        "id": record.scan_id,
        "input": record.input_name,
        "state": record.state.value,
        "status": "rejected" if record.rejected else record.status,
        "received": record.received,
        "updated": record.updated,
        "label": record.label,
        "probability": record.probability,
        "result": record.result_file if record.state.final else None,
        "answers": record.answers,
        "reader": record.reader,
        "reason": record.failure.reason if record.failure else None,
    }


# -- pages -------------------------------------------------------------------------------------------------------
async def healthz(request: Request) -> Response:
    """200 while the analysis loop ticks and works, 503 otherwise; one line saying which (open to anyone: a load
    balancer or a monitor asks it without credentials, and it tells nothing about any scan)."""
    health = loop_health(_state(request).config.paths.state)
    return PlainTextResponse(health.reason + "\n", status_code=200 if health.healthy else 503)


async def metrics(request: Request, who: Principal) -> Response:
    """The analysis service's Prometheus metrics as it last wrote them (every 10 s), for a token or a session."""
    try:
        text = (_state(request).config.paths.state / METRICS).read_bytes()
    except FileNotFoundError:
        return error(503, "the analysis service has not written its metrics yet (is mammo-edge.service running?)")
    return Response(text, media_type=CONTENT_TYPE_LATEST)


async def login_page(request: Request) -> Response:
    return FileResponse(_static("login.html"))


async def home(request: Request, who: Principal) -> Response:
    return RedirectResponse("/scans", status_code=303)


async def scans_page(request: Request, who: Principal) -> Response:
    return FileResponse(_static("scans.html"))


async def mark_page(request: Request, who: Principal) -> Response:
    if not is_scan_id(request.path_params["scan_id"]):
        return error(404, "not found: no such scan")
    return FileResponse(_static("mark.html"))


async def results_file(request: Request, who: Principal) -> Response:
    """A file of the results folder (the pages, their pictures, the result documents), never anything outside it."""
    results = _state(request).config.paths.results.resolve()
    path = (results / request.path_params["path"]).resolve()
    if not path.is_relative_to(results) or not path.is_file():
        return error(404, "not found: no such file in the results")
    if path.suffix == ".html":
        content = path.read_bytes()
        return Response(content, media_type="text/html", headers={"content-security-policy": page_policy(content)})
    return FileResponse(path)


# -- session -----------------------------------------------------------------------------------------------------
async def login(request: Request) -> Response:
    state = _state(request)
    body = await read_body(request, MAX_LOGIN_BYTES)
    if isinstance(body, Response):
        return body
    try:
        values = json.loads(body)
        user, password = str(values["user"]), str(values["password"])
    except (ValueError, KeyError, TypeError):
        return error(400, 'the body must be {"user": ..., "password": ...}')
    address = request.client.host if request.client else "unknown"
    keys = (f"user:{user}", f"address:{address}")
    wait = state.throttle.retry_after(keys)
    if wait is not None:
        state.record("login refused", user, address=address, reason="too many failed attempts")
        return error(
            429, f"too many failed logins: try again in {math.ceil(wait)} s", **{"Retry-After": str(math.ceil(wait))}
        )
    if not await run_in_threadpool(state.accounts.verify_password, user, password):
        state.throttle.failed(keys)
        state.record("login failed", user, address=address)
        return error(401, "wrong account name or password")
    state.throttle.succeeded(keys[0])
    cookie, session = state.accounts.open_session(user)
    state.record("login", user, address=address)
    response = JSONResponse({"user": session.user, "csrf": session.csrf})
    max_age = int(state.config.web.session_max_hours * 3600)
    response.set_cookie(SESSION_COOKIE, cookie, **cookie_arguments(state.tls, max_age))
    return response


async def whoami(request: Request, who: Principal) -> Response:
    return JSONResponse({"user": who.name, "kind": who.kind, "csrf": who.csrf})


async def logout(request: Request, who: Principal) -> Response:
    state = _state(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        state.accounts.close_session(cookie)
    state.record("logout", who.name)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=state.tls, httponly=True, samesite="strict")
    return response


# -- scans -------------------------------------------------------------------------------------------------------
async def list_scans(request: Request, who: Principal) -> Response:
    status = request.query_params.get("status") or None
    if status is not None and status not in STATUSES:
        return error(400, f"status must be one of {', '.join(STATUSES)}")
    try:
        limit = min(MAX_LIST, max(1, int(request.query_params.get("limit", "50"))))
        before_text = request.query_params.get("before")
        before = float(before_text) if before_text else None
    except ValueError:
        return error(400, "limit must be an integer and before a time (the last scan's received)")
    records = _state(request).journal.listed(status, limit, before)
    following = records[-1].received if len(records) == limit else None
    return JSONResponse({"scans": [summary(record) for record in records], "before": following})


def _record(request: Request) -> ScanRecord | Response:
    scan_id = request.path_params["scan_id"]
    record = _state(request).journal.get(scan_id) if is_scan_id(scan_id) else None
    return error(404, "not found: no such scan") if record is None else record


def _result(state: WebState, record: ScanRecord) -> dict[str, Any] | None:
    if record.result_file is None or not record.state.final:
        return None
    try:
        document: dict[str, Any] = json.loads((state.config.paths.results / record.result_file).read_text())
    except (OSError, ValueError):
        return None
    return document


def _film_name(record: ScanRecord) -> str | None:
    """The archived film of a finished, answered scan (a refused one has no film to mark)."""
    if record.state is not ScanState.ARCHIVED or record.settled_name is None:
        return None
    return record.settled_name


async def get_scan(request: Request, who: Principal) -> Response:
    state = _state(request)
    found = _record(request)
    if isinstance(found, Response):
        scan_id = request.path_params["scan_id"]
        if is_scan_id(scan_id) and scan_id in state.submissions.pending():
            return JSONResponse({"scan": {"id": scan_id, "state": "submitted"}, "result": None, "answered_by": []})
        return found
    film = _film_name(found)
    facts = None
    if film is not None:
        try:
            facts = await run_in_threadpool(state.films.facts, film)
        except (OSError, InputImageError) as exc:
            log.warning("%s: its archived film cannot be shown: %s", found.scan_id, exc)
    return JSONResponse(
        {
            "scan": summary(found),
            "result": _result(state, found),
            "film": facts,
            "answered_by": [summary(record) for record in state.journal.answered_by(found.scan_id)],
        }
    )


async def film_image(request: Request, who: Principal) -> Response:
    state = _state(request)
    found = _record(request)
    if isinstance(found, Response):
        return found
    film = _film_name(found)
    if film is None:
        return error(409, "this scan has no archived film to show (refused, or not finished yet)")
    window = None
    if "center" in request.query_params or "width" in request.query_params:
        try:
            window = (float(request.query_params["center"]), float(request.query_params["width"]))
        except (KeyError, ValueError):
            return error(400, "a window needs both center and width, as numbers")
        if not (math.isfinite(window[0]) and math.isfinite(window[1]) and window[1] > 0):
            return error(400, "the window's center must be finite and its width > 0")
    try:
        png = await run_in_threadpool(state.films.png, film, window)
    except (OSError, InputImageError) as exc:
        return error(409, f"the archived film cannot be shown: {exc}")
    return Response(png, media_type="image/png", headers={"cache-control": "private, no-store"})


async def submit_regions(request: Request, who: Principal) -> Response:
    state = _state(request)
    found = _record(request)
    if isinstance(found, Response):
        return found
    film = _film_name(found)
    if film is None:
        return error(409, "regions can be marked only on an answered film kept in the archive")
    result = _result(state, found)
    if result is None:
        return error(409, "the scan's result cannot be read, so its size is unknown")
    body = await read_body(request, MAX_ROI_BYTES)
    if isinstance(body, Response):
        return body
    image = result["image"]
    try:
        parse_sidecar("roi", body, int(image["width"]), int(image["height"]))
        regions = json.loads(body)
    except RegionError as exc:
        return error(422, str(exc))
    scan_id = new_scan_id()
    submission = Submission(scan_id, found.scan_id, found.input_name, film, regions, who.marker, time.time())
    await run_in_threadpool(state.submissions.put, submission)
    state.record("mark", who.marker, scan=found.scan_id, answer=scan_id, regions=regions["regions"])
    return JSONResponse({"id": scan_id}, status_code=202, headers={"location": f"/api/scans/{scan_id}"})


async def _not_found(request: Request, exc: Exception) -> Response:
    return error(404, "not found: no such scan, page or file")


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return error(405, f"{request.method} is not allowed here")


def create_app(config: Config, accounts: AccountStore, throttle: LoginThrottle | None = None) -> Starlette:
    """The app over the configured folders; `throttle` is injected by tests (a fake clock)."""
    web = config.web
    state = WebState(
        config,
        accounts,
        Journal(journal_path(config)),
        SubmissionQueue(config.paths.state),
        FilmReader(config.paths.archive, config.ingest.max_pixels),
        throttle or LoginThrottle(web.login_attempts, web.login_window_minutes * 60),
        AuditLog(web_folder(config) / "audit.jsonl", int(config.log.audit_max_mb * 2**20)),
        bool(web.tls_cert),
    )
    routes = [
        Route("/healthz", healthz),
        Route("/metrics", guarded(metrics)),
        Route("/login", login_page),
        Route("/", guarded(home, page=True)),
        Route("/scans", guarded(scans_page, page=True)),
        Route("/scans/{scan_id}", guarded(mark_page, page=True)),
        Route("/results/{path:path}", guarded(results_file, page=True)),
        Route("/api/session", login, methods=["POST"]),
        Route("/api/session", guarded(whoami), methods=["GET"]),
        Route("/api/session", guarded(logout), methods=["DELETE"]),
        Route("/api/scans", guarded(list_scans)),
        Route("/api/scans/{scan_id}", guarded(get_scan)),
        Route("/api/scans/{scan_id}/image", guarded(film_image)),
        Route("/api/scans/{scan_id}/regions", guarded(submit_regions), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders, tls=state.tls)],
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
    app.state.web = state
    app.state.accounts = accounts
    return app
