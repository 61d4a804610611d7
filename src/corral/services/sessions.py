"""Web console sessions: opened by a login, found by the cookie's secret, ended by a logout,
an idle timeout or an absolute lifetime.

Only a SHA-256 of each session's secret is kept (like API tokens), in memory: a daemon
restart logs every console user out, and nothing on disk holds a live credential. Each
session has its own CSRF token, which every change the console makes must carry.
The clock is injectable, so expiry is tested without waiting.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

DEFAULT_IDLE = 2 * 3600.0
DEFAULT_LIFETIME = 12 * 3600.0


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str
    opened: float
    seen: float

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(),
                                                             self.csrf.encode())


def _key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class SessionStore:
    def __init__(self, idle: float = DEFAULT_IDLE, lifetime: float = DEFAULT_LIFETIME,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if idle <= 0 or lifetime <= 0:
            raise ValueError("session timeouts must be positive")
        self.idle = idle
        self.lifetime = lifetime
        self.clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def open(self, user: str) -> tuple[str, Session]:
        """A new session for ``user``: the cookie's secret (shown only now) and the session."""
        secret = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(user, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._sweep(now)
            self._sessions[_key(secret)] = session
        return secret, session

    def find(self, secret: str) -> Session | None:
        """The live session of ``secret`` (its idle time restarts); None: none or expired."""
        key = _key(secret)
        with self._lock:
            now = self.clock()
            found = self._sessions.get(key)
            if found is None:
                return None
            if self._expired(found, now):
                del self._sessions[key]
                return None
            found = self._sessions[key] = replace(found, seen=now)
            return found

    def close(self, secret: str) -> None:
        with self._lock:
            self._sessions.pop(_key(secret), None)

    def close_user(self, user: str) -> int:
        """End every session of ``user`` (removed, or its password changed)."""
        with self._lock:
            gone = [k for k, s in self._sessions.items() if s.user == user]
            for key in gone:
                del self._sessions[key]
        return len(gone)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.seen >= self.idle or now - session.opened >= self.lifetime

    def _sweep(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[key]
