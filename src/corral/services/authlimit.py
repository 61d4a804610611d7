"""Failed authentication, counted per client address: ONE limit for every surface.

The TCP API's bearer-token check (``api/identity.TokenAuth``) and the web console's login
(``web/login.py``) both report each failure here and both ask ``blocked`` before checking
anything: a client that guessed N tokens wrong may not go on guessing passwords, and the
other way round. A client is blocked while it has ``limit`` failures inside the last
``window`` seconds; the block ends as the oldest of them leaves the window. A success does
not erase failures (a guesser holding one valid credential gains nothing).

``listeners`` is the hook for the audit log: each is called with every ``AuthFailure``
(and every refusal of a blocked client), after the limiter has counted it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_LIMIT = 10
DEFAULT_WINDOW = 300.0
MAX_CLIENTS = 10000
"""Addresses remembered at once; the least recently failing are forgotten first (bounded
memory under a spray of source addresses)."""


@dataclass(frozen=True)
class AuthFailure:
    address: str
    surface: str
    """Where: ``api`` (a bearer token over TCP) or ``web`` (a console login)."""
    user: str | None
    """The user name a login tried (None for a token)."""
    blocked: bool
    """True: refused unchecked, the address was already over the limit."""
    at: float
    """Wall-clock time (``time.time``)."""


class FailedAuthLimiter:
    def __init__(self, limit: int = DEFAULT_LIMIT, window: float = DEFAULT_WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("the failed-authentication limit needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self.clock = clock
        self.listeners: list[Callable[[AuthFailure], None]] = []
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> deque[float] | None:
        found = self._failures.get(address)
        if found is None:
            return None
        while found and found[0] <= now - self.window:
            found.popleft()
        if not found:
            del self._failures[address]
            return None
        return found

    def blocked(self, address: str) -> float | None:
        """Seconds until ``address`` may try again (None: it may now)."""
        with self._lock:
            now = self.clock()
            found = self._recent(address, now)
            if found is None or len(found) < self.limit:
                return None
            return max(found[-self.limit] + self.window - now, 0.001)

    def failed(self, address: str, surface: str, user: str | None = None) -> None:
        """Count one failed attempt from ``address``."""
        with self._lock:
            now = self.clock()
            found = self._recent(address, now)
            if found is None:
                found = self._failures[address] = deque(maxlen=self.limit)
            found.append(now)
            self._failures.move_to_end(address)
            while len(self._failures) > MAX_CLIENTS:
                self._failures.popitem(last=False)
        self._tell(AuthFailure(address, surface, user, False, time.time()))

    def refused(self, address: str, surface: str, user: str | None = None) -> None:
        """Tell the listeners a blocked client was refused (not counted again)."""
        self._tell(AuthFailure(address, surface, user, True, time.time()))

    def _tell(self, failure: AuthFailure) -> None:
        for listener in list(self.listeners):
            listener(failure)


def wait_message(seconds: float) -> str:
    return (f"too many failed authentication attempts from this address; try again in "
            f"{max(int(seconds + 0.999), 1)} s")
