"""Web console sessions: opened by a login, found by the cookie's secret, ended by a logout,
an idle timeout or an absolute lifetime.

Sessions are rows of the daemon's database (``state/sessionstore.py``), so a corrald restart
keeps everyone logged in. Only a SHA-256 of each session's secret is kept (like API tokens):
nothing on disk is a live credential. Each session has its own CSRF token, which every
change the console makes must carry (useless without the cookie's secret). Times are wall
clock (Unix seconds, they must mean the same after a restart); the clock is injectable, so
expiry is tested without waiting. A use moves the stored "last seen" only when it is more
than ``touch_every`` (a tenth of the idle time, at most 30 s) old: a page's many requests
write once, and a session can end that much before its full idle time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from corral.state.database import Database
from corral.state.sessionstore import SessionRow, SessionTable

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
    def __init__(self, db: Database, idle: float = DEFAULT_IDLE,
                 lifetime: float = DEFAULT_LIFETIME,
                 clock: Callable[[], float] = time.time) -> None:
        if idle <= 0 or lifetime <= 0:
            raise ValueError("session timeouts must be positive")
        self.idle = idle
        self.lifetime = lifetime
        self.touch_every = min(idle / 10, 30.0)
        self.clock = clock
        self.table = SessionTable(db)

    def open(self, user: str) -> tuple[str, Session]:
        """A new session for ``user``: the cookie's secret (shown only now) and the session."""
        secret = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(user, secrets.token_urlsafe(32), now, now)
        self._sweep(now)
        self.table.add(_key(secret), SessionRow(user, session.csrf, now, now))
        return secret, session

    def find(self, secret: str) -> Session | None:
        """The live session of ``secret`` (its idle time restarts); None: none or expired."""
        key = _key(secret)
        now = self.clock()
        row = self.table.get(key)
        if row is None:
            return None
        found = Session(row.user, row.csrf, row.opened, row.seen)
        if self._expired(found, now):
            self.table.remove(key)
            return None
        if now - found.seen >= self.touch_every:
            self.table.touch(key, now)
        return Session(found.user, found.csrf, found.opened, now)

    def close(self, secret: str) -> None:
        self.table.remove(_key(secret))

    def close_user(self, user: str) -> int:
        """End every session of ``user`` (removed, or its password changed)."""
        return self.table.remove_user(user)

    def __len__(self) -> int:
        return self.table.count()

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.seen >= self.idle or now - session.opened >= self.lifetime

    def _sweep(self, now: float) -> None:
        self.table.remove_expired(now - self.idle, now - self.lifetime)
