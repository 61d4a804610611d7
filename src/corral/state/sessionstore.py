"""Web console sessions in the daemon's database (the only code building their queries).
A row is keyed by the SHA-256 of the cookie's secret, never the secret; times are Unix
seconds."""

from __future__ import annotations

from dataclasses import dataclass

from corral.state.database import Database


@dataclass(frozen=True)
class SessionRow:
    user: str
    csrf: str
    opened: float
    seen: float


class SessionTable:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, key: str, row: SessionRow) -> None:
        self.db.execute("INSERT INTO web_sessions (secret_hash, user, csrf, opened, seen) "
                        "VALUES (?, ?, ?, ?, ?)", (key, row.user, row.csrf, row.opened,
                                                   row.seen))

    def get(self, key: str) -> SessionRow | None:
        found = self.db.one("SELECT user, csrf, opened, seen FROM web_sessions "
                            "WHERE secret_hash = ?", (key,))
        return None if found is None else SessionRow(*found)

    def touch(self, key: str, seen: float) -> None:
        self.db.execute("UPDATE web_sessions SET seen = ? WHERE secret_hash = ?", (seen, key))

    def remove(self, key: str) -> None:
        self.db.execute("DELETE FROM web_sessions WHERE secret_hash = ?", (key,))

    def remove_user(self, user: str) -> int:
        return self.db.execute("DELETE FROM web_sessions WHERE user = ?", (user,))

    def remove_expired(self, seen_before: float, opened_before: float) -> int:
        return self.db.execute("DELETE FROM web_sessions WHERE seen <= ? OR opened <= ?",
                               (seen_before, opened_before))

    def count(self) -> int:
        return int(self.db.column("SELECT COUNT(*) FROM web_sessions")[0])

    def keys(self) -> list[str]:
        return self.db.column("SELECT secret_hash FROM web_sessions")
