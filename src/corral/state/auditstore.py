"""The audit log of mutating API calls (the only code building its queries)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from corral.state.database import Database, Mapper, from_sql_datetime, to_sql_datetime

MAX_ROWS = 10000
"""The most rows one query returns."""


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    user: str
    role: str
    token: str | None
    source: str
    method: str
    path: str
    action: str
    instance: str | None
    status: int
    result: str  # ok, refused (4xx), failed (5xx)
    message: str | None = None
    id: int = 0


AUDIT: Mapper[AuditEntry] = Mapper(
    "audit_log",
    ("at", "user", "role", "token", "source", "method", "path", "action", "instance", "status",
     "result", "message", "id"),
    lambda r: AuditEntry(from_sql_datetime(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7],
                         r[8], r[9], r[10], r[11], r[12]),
    lambda e: (to_sql_datetime(e.at), e.user, e.role, e.token, e.source, e.method, e.path,
               e.action, e.instance, e.status, e.result, e.message, None),
)


@dataclass(frozen=True)
class AuditFilter:
    user: str | None = None
    instance: str | None = None
    since: datetime | None = None
    action: str | None = None
    result: str | None = None
    limit: int = 1000


class AuditStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, entry: AuditEntry) -> None:
        self.db.execute(AUDIT.insert, AUDIT.dump(entry))

    def prune(self, before: datetime | None, keep: int | None) -> int:
        """Delete the entries older than ``before`` and all but the newest ``keep``; how
        many went (None: no limit of that kind)."""
        gone = 0
        if before is not None:
            gone += self.db.execute("DELETE FROM audit_log WHERE at < ?",
                                    (to_sql_datetime(before),))
        if keep is not None:
            row = self.db.one("SELECT id FROM audit_log ORDER BY id DESC LIMIT 1 OFFSET ?",
                              (max(0, keep - 1),)) if keep > 0 else None
            if keep <= 0:
                gone += self.db.execute("DELETE FROM audit_log")
            elif row is not None:
                gone += self.db.execute("DELETE FROM audit_log WHERE id < ?", (row[0],))
        return gone

    def count(self) -> int:
        row = self.db.one("SELECT COUNT(*) FROM audit_log")
        return int(row[0]) if row else 0

    def query(self, where: AuditFilter) -> list[AuditEntry]:
        """Matching entries, newest first."""
        clauses: list[str] = []
        params: list[object] = []
        for column, value in (("user", where.user), ("instance", where.instance),
                              ("action", where.action), ("result", where.result)):
            if value is not None:
                clauses.append(f'"{column}" = ?')
                params.append(value)
        if where.since is not None:
            clauses.append("at >= ?")
            params.append(to_sql_datetime(where.since))
        sql = AUDIT.select + (" WHERE " + " AND ".join(clauses) if clauses else "")
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(max(1, min(where.limit, MAX_ROWS)))
        return [AUDIT.load(r) for r in self.db.all(sql, params)]
