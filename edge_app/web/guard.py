"""Who is asking, and what every response carries: the web app's one gate.

A request is a reader's when it brings a live session cookie, a program's when it brings ``Authorization: Bearer
<token>``; nothing else gets past `guarded` (pages redirect to the login, the API answers 401). A reader's
state-changing request must also carry its session's CSRF token in ``X-CSRF-Token`` (a token-bearing program has no
ambient cookie to abuse, so it needs none), and every request with a body must say it is JSON, which a cross-site
form cannot. Every response says: no caching, no sniffing, no framing, no referrer, scripts and styles from this
device only (the results pages' own inline ones by their hashes); and, under TLS, HSTS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge_app.web.accounts import AccountStore

SESSION_COOKIE = "mammo_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD"})
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_INLINE = re.compile(rb"<(script|style)>(.*?)</\1>", re.S)


@dataclass(frozen=True)
class Principal:
    """A reader (by session) or a program (by token), and the session's CSRF token (None for a program)."""

    name: str
    kind: str  # "reader" | "token"
    csrf: str | None

    @property
    def marker(self) -> str:
        """How a mark by this principal is attributed: the reader's account, or ``token:NAME``."""
        return self.name if self.kind == "reader" else f"token:{self.name}"


def error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def identify(request: Request, accounts: AccountStore) -> Principal | None:
    authorization = request.headers.get("authorization", "")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        name = accounts.token_name(token.strip()) if scheme.lower() == "bearer" else None
        return None if name is None else Principal(name, "token", None)
    cookie = request.cookies.get(SESSION_COOKIE)
    session = accounts.session(cookie) if cookie else None
    return None if session is None else Principal(session.user, "reader", session.csrf)


Handler = Callable[[Request], Awaitable[Response]]


def guarded(handler: Callable[[Request, Principal], Awaitable[Response]], page: bool = False) -> Handler:
    """`handler` for a known principal only; a reader's state-changing request with its CSRF token only."""

    async def endpoint(request: Request) -> Response:
        accounts: AccountStore = request.app.state.accounts
        who = identify(request, accounts)
        if who is None:
            if page:
                return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
            return error(401, "log in, or send a token (Authorization: Bearer ...)", **{"WWW-Authenticate": "Bearer"})
        changes = request.method not in SAFE_METHODS
        if (
            changes
            and who.kind == "reader"
            and not hmac.compare_digest(request.headers.get(CSRF_HEADER, ""), who.csrf or "")
        ):
            return error(403, "this request lacks its CSRF token (X-CSRF-Token): reload the page")
        return await handler(request, who)

    return endpoint


def inline_hashes(html: bytes) -> tuple[list[str], list[str]]:
    """CSP hash sources of a page's inline scripts and styles (the results pages are self-contained files)."""
    scripts: list[str] = []
    styles: list[str] = []
    for kind, body in _INLINE.findall(html):
        source = "'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode() + "'"
        (scripts if kind == b"script" else styles).append(source)
    return scripts, styles


def page_policy(html: bytes) -> str:
    """The CSP of one of the device's own static pages: its inline script and style allowed by hash, nothing else."""
    scripts, styles = inline_hashes(html)
    return CSP.replace("script-src 'self'", " ".join(["script-src 'self'", *scripts])).replace(
        "style-src 'self'", " ".join(["style-src 'self'", *styles])
    )


class SecurityHeaders:
    """Pure ASGI middleware: the headers every response carries (a response may set its own CSP first)."""

    def __init__(self, app: ASGIApp, tls: bool) -> None:
        self.app = app
        self.headers: list[tuple[bytes, bytes]] = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cache-control", b"no-store"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        if tls:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in self.headers if name not in present]
                if b"content-security-policy" not in present:
                    extra.append((b"content-security-policy", CSP.encode()))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


async def read_body(request: Request, limit: int) -> bytes | Response:
    """The request's body, or the refusal: not JSON (415), or longer than `limit` bytes (413, read no further)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return error(415, "the body must be JSON (Content-Type: application/json)")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return error(413, f"the body may be at most {limit:,} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return error(413, f"the body may be at most {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def cookie_arguments(tls: bool, max_age: int) -> dict[str, Any]:
    """The session cookie: HttpOnly, SameSite=Strict, Secure under TLS, this whole site."""
    return {"httponly": True, "samesite": "strict", "secure": tls, "path": "/", "max_age": max_age}
