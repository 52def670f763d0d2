"""Who may use the device's web app: reader accounts, program tokens and login sessions, in one SQLite file.

Nothing that would let someone in is stored in the clear. Passwords are hashed with Argon2id (argon2-cffi's
defaults: memory-hard, salted, parameters in the hash so they can be raised later); a token is 32 random bytes shown
once when it is made, of which only the SHA-256 is kept (a fast hash suits a secret that random: nothing to guess);
a session cookie is the same, and its CSRF token lives beside it. A session ends after ``idle_minutes`` without a
request or ``max_hours`` after the login, whichever comes first. The clock is injected, so expiry is tested with a
fake one.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from edge_app.errors import AccessError

TOKEN_PREFIX = "mmt_"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD_LENGTH = 12
_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    name TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL UNIQUE, created REAL NOT NULL, revoked REAL, last_used REAL
);
CREATE TABLE IF NOT EXISTS sessions (
    id_sha256 TEXT PRIMARY KEY, user TEXT NOT NULL, csrf TEXT NOT NULL, created REAL NOT NULL, last_seen REAL NOT NULL
);
"""

# The statements, by what they do (SQLite reads keywords and names in any case).
_ADD_USER = "INSERT INTO users (name, password_hash, created) VALUES (?, ?, ?)"
_REMOVE_USER = "DELETE FROM users WHERE name = ?"
_END_USERS_SESSIONS = "DELETE FROM sessions WHERE user = ?"
_USERS = "SELECT name FROM users ORDER BY name"
_PASSWORD_HASH = "SELECT password_hash FROM users WHERE name = ?"
_ADD_TOKEN = "INSERT INTO tokens (name, token_sha256, created) VALUES (?, ?, ?)"
_REVOKE_TOKEN = "UPDATE tokens SET revoked = ? WHERE name = ? AND revoked IS NULL"
_TOKENS = "SELECT name, created, revoked, last_used FROM tokens ORDER BY name"
_TOKEN_NAME = "SELECT name FROM tokens WHERE token_sha256 = ? AND revoked IS NULL"
_TOKEN_USED = "UPDATE tokens SET last_used = ? WHERE name = ?"
_OPEN_SESSION = "INSERT INTO sessions (id_sha256, user, csrf, created, last_seen) VALUES (?, ?, ?, ?, ?)"
_END_EXPIRED_SESSIONS = "DELETE FROM sessions WHERE last_seen < ? OR created < ?"
_SESSION_SEEN = "UPDATE sessions SET last_seen = ? WHERE id_sha256 = ?"
_CLOSE_SESSION = "DELETE FROM sessions WHERE id_sha256 = ?"
_SESSION = (
    "SELECT sessions.user, sessions.csrf FROM sessions JOIN users ON users.name = sessions.user "
    "WHERE sessions.id_sha256 = ?"
)


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_name(name: str, what: str) -> str:
    """Account and token names: letters, digits and ``._@-``, up to 64 characters (they appear in audit lines)."""
    if not NAME_PATTERN.fullmatch(name):
        raise AccessError(
            f"{what} name {name!r} must be 1-64 letters, digits or ._@- (starting with a letter or digit)"
        )
    return name


@dataclass(frozen=True)
class Session:
    """A logged-in reader: who, and the CSRF token every state-changing request of this session must carry."""

    user: str
    csrf: str


@dataclass(frozen=True)
class TokenInfo:
    name: str
    created: float
    revoked: float | None
    last_used: float | None


class AccountStore:
    """Accounts, tokens and sessions; safe to share between the web app's threads."""

    def __init__(
        self,
        path: Path,
        idle_minutes: float = 30.0,
        max_hours: float = 12.0,
        clock: Callable[[], float] = time.time,
        hasher: PasswordHasher | None = None,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        path.chmod(0o600)
        self.idle_seconds = idle_minutes * 60
        self.max_seconds = max_hours * 3600
        self.clock = clock
        self.hasher = hasher or PasswordHasher()
        # Verified against when a name is unknown, so a wrong name costs what a wrong password does (no enumeration).
        self._decoy = self.hasher.hash(secrets.token_urlsafe(16))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return list(self._db.execute(sql, parameters).fetchall())

    def _change(self, sql: str, parameters: Sequence[Any] = ()) -> int:
        with self._lock:
            return int(self._db.execute(sql, parameters).rowcount)

    # -- reader accounts ---------------------------------------------------------------------------------------
    def add_user(self, name: str, password: str) -> None:
        check_name(name, "account")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AccessError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
        try:
            self._change(
                _ADD_USER,
                (name, self.hasher.hash(password), self.clock()),
            )
        except sqlite3.IntegrityError:
            raise AccessError(f"account {name!r} already exists (remove it first to set a new password)") from None

    def remove_user(self, name: str) -> None:
        if not self._change(_REMOVE_USER, (name,)):
            raise AccessError(f"no account named {name!r}")
        self._change(_END_USERS_SESSIONS, (name,))  # logged out everywhere at once

    def users(self) -> list[str]:
        return [row[0] for row in self._run(_USERS)]

    def verify_password(self, name: str, password: str) -> bool:
        rows = self._run(_PASSWORD_HASH, (name,))
        stored = rows[0][0] if rows else self._decoy
        try:
            self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
        return bool(rows)

    # -- program tokens ----------------------------------------------------------------------------------------
    def add_token(self, name: str) -> str:
        """A new token for program `name`; returned once, only its hash is kept."""
        check_name(name, "token")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        try:
            self._change(
                _ADD_TOKEN,
                (name, _sha256(token), self.clock()),
            )
        except sqlite3.IntegrityError:
            raise AccessError(f"a token named {name!r} exists already (revoke it, or choose another name)") from None
        return token

    def revoke_token(self, name: str) -> None:
        if not self._change(_REVOKE_TOKEN, (self.clock(), name)):
            raise AccessError(f"no active token named {name!r}")

    def tokens(self) -> list[TokenInfo]:
        rows = self._run(_TOKENS)
        return [TokenInfo(*row) for row in rows]

    def token_name(self, token: str) -> str | None:
        """The program a valid, unrevoked token belongs to (its use is recorded), else None."""
        rows = self._run(_TOKEN_NAME, (_sha256(token),))
        if not rows:
            return None
        self._change(_TOKEN_USED, (self.clock(), rows[0][0]))
        return str(rows[0][0])

    # -- login sessions ----------------------------------------------------------------------------------------
    def open_session(self, user: str) -> tuple[str, Session]:
        """A new session for `user`: the cookie value (returned once) and the session."""
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self.clock()
        self._change(
            _OPEN_SESSION,
            (_sha256(cookie), user, csrf, now, now),
        )
        return cookie, Session(user, csrf)

    def session(self, cookie: str) -> Session | None:
        """The live session a cookie names (its idle time starts again), else None; expired ones are deleted."""
        now = self.clock()
        self._change(_END_EXPIRED_SESSIONS, (now - self.idle_seconds, now - self.max_seconds))
        key = _sha256(cookie)
        rows = self._run(
            _SESSION,
            (key,),
        )
        if not rows:
            return None
        self._change(_SESSION_SEEN, (now, key))
        return Session(rows[0][0], rows[0][1])

    def close_session(self, cookie: str) -> None:
        self._change(_CLOSE_SESSION, (_sha256(cookie),))
