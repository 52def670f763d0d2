"""Login attempts, rate-limited: password guessing costs an attacker hours, a reader who mistypes twice nothing.

Failed logins are counted per account name and per client address over a sliding window; once either has
`attempts` failures in the window, further logins for it are refused (HTTP 429 with Retry-After) until the oldest
failure leaves the window, whether the password is right or not. A success clears the account's count. The clock is
injected (tests use a fake one), and the number of keys tracked is bounded, so a flood of made-up names cannot grow
memory without end.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

MAX_KEYS = 10_000


class LoginThrottle:
    def __init__(
        self, attempts: int = 5, window_seconds: float = 900.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.attempts = attempts
        self.window = window_seconds
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, keys: Iterable[str]) -> float | None:
        """Seconds until a login for these keys (``user:NAME``, ``address:IP``) is allowed again; None: now."""
        now = self.clock()
        waits = []
        with self._lock:
            for key in keys:
                failures = self._recent(key, now)
                if failures is not None and len(failures) >= self.attempts:
                    waits.append(failures[0] + self.window - now)
        return max(waits) if waits else None

    def failed(self, keys: Iterable[str]) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                failures = self._recent(key, now)
                if failures is None:
                    if len(self._failures) >= MAX_KEYS:
                        self._forget_oldest()
                    failures = self._failures[key] = deque(maxlen=self.attempts)
                failures.append(now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        """The key's failures still in the window; None for a key not tracked (asking never starts tracking one, so
        only failures count against the bound)."""
        failures = self._failures.get(key)
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def _forget_oldest(self) -> None:
        oldest = min(self._failures, key=lambda key: self._failures[key][-1] if self._failures[key] else 0.0)
        del self._failures[oldest]
