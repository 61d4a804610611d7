"""Remotes and migration records in the daemon's database."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from corral.domain.errors import Conflict, NotFound
from corral.domain.statuses import MigrationStatus
from corral.state.database import (
    Database,
    Mapper,
    from_sql_datetime,
    optional_datetime,
    to_sql_datetime,
    utcnow,
)


@dataclass(frozen=True)
class RemoteRecord:
    name: str
    url: str
    token: str
    fingerprint: str
    cert_pem: str
    created_at: datetime


@dataclass(frozen=True)
class MigrationRecord:
    id: str
    direction: str
    instance: str
    instance_id: int | None
    kind: str
    peer: str
    path: str
    status: MigrationStatus
    phase: str
    operation: str | None
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


REMOTES: Mapper[RemoteRecord] = Mapper(
    "remotes", ("name", "url", "token", "fingerprint", "cert_pem", "created_at"),
    lambda r: RemoteRecord(r[0], r[1], r[2], r[3], r[4], from_sql_datetime(r[5])),
    lambda m: (m.name, m.url, m.token, m.fingerprint, m.cert_pem,
               to_sql_datetime(m.created_at)),
)

MIGRATIONS: Mapper[MigrationRecord] = Mapper(
    "migrations",
    ("id", "direction", "instance", "instance_id", "kind", "peer", "path", "status", "phase",
     "operation", "details", "error", "created_at", "updated_at"),
    lambda r: MigrationRecord(
        id=r[0], direction=r[1], instance=r[2], instance_id=r[3], kind=r[4], peer=r[5],
        path=r[6], status=MigrationStatus(r[7]), phase=r[8], operation=r[9],
        details=json.loads(r[10]), error=r[11], created_at=optional_datetime(r[12]),
        updated_at=optional_datetime(r[13])),
    lambda m: (m.id, m.direction, m.instance, m.instance_id, m.kind, m.peer, m.path,
               m.status.value, m.phase, m.operation, json.dumps(m.details), m.error,
               None if m.created_at is None else to_sql_datetime(m.created_at),
               None if m.updated_at is None else to_sql_datetime(m.updated_at)),
)

_UPDATABLE = frozenset(MIGRATIONS.columns) - {"id", "created_at", "updated_at", "details"}


class MigrationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # Remotes --------------------------------------------------------------------------
    def list_remotes(self) -> list[RemoteRecord]:
        return [REMOTES.load(r) for r in self.db.all(f"{REMOTES.select} ORDER BY name")]

    def get_remote(self, name: str) -> RemoteRecord:
        row = self.db.one(f"{REMOTES.select} WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"no remote '{name}' (corral remote add {name} URL --token T)")
        return REMOTES.load(row)

    def put_remote(self, remote: RemoteRecord, replace: bool = False) -> None:
        """Add ``remote``; with ``replace``, an existing one keeps its creation time."""
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM remotes WHERE name = ?", (remote.name,)).fetchone():
                if not replace:
                    raise Conflict(f"a remote named '{remote.name}' exists; remove it first")
                conn.execute("UPDATE remotes SET url = ?, token = ?, fingerprint = ?, "
                             "cert_pem = ? WHERE name = ?", (remote.url, remote.token,
                             remote.fingerprint, remote.cert_pem, remote.name))
            else:
                conn.execute(REMOTES.insert, REMOTES.dump(remote))

    def delete_remote(self, name: str) -> None:
        if not self.db.execute("DELETE FROM remotes WHERE name = ?", (name,)):
            raise NotFound(f"no remote '{name}'")

    # Migrations -----------------------------------------------------------------------
    def insert_migration(self, rec: MigrationRecord) -> None:
        now = utcnow()
        with self.db.transaction() as conn:
            conn.execute(MIGRATIONS.insert,
                         MIGRATIONS.dump(replace(rec, created_at=now, updated_at=now)))

    def update_migration(self, mid: str, **values: Any) -> MigrationRecord:
        """Set the given columns; ``details`` are merged into the stored ones."""
        unknown = set(values) - _UPDATABLE - {"details"}
        if unknown:
            raise ValueError(f"not a migration column: {', '.join(sorted(unknown))}")
        with self.db.transaction() as conn:
            row = conn.execute(f"{MIGRATIONS.select} WHERE id = ?", (mid,)).fetchone()
            if row is None:
                raise NotFound(f"no migration '{mid}'")
            rec = MIGRATIONS.load(row)
            details = values.pop("details", None)
            if details is not None:
                values["details"] = {**rec.details, **details}
            if "status" in values:
                values["status"] = MigrationStatus(values["status"])
            rec = replace(rec, **values, updated_at=utcnow())
            conn.execute(
                f"UPDATE migrations SET ({', '.join(MIGRATIONS.columns)}) = "
                f"({', '.join('?' * len(MIGRATIONS.columns))}) WHERE id = ?",
                (*MIGRATIONS.dump(rec), mid))
            return rec

    def get_migration(self, mid: str) -> MigrationRecord:
        row = self.db.one(f"{MIGRATIONS.select} WHERE id = ?", (mid,))
        if row is None:
            raise NotFound(f"no migration '{mid}'")
        return MIGRATIONS.load(row)

    def find_by_operation(self, op_id: str) -> MigrationRecord:
        row = self.db.one(f"{MIGRATIONS.select} WHERE operation = ? LIMIT 1", (op_id,))
        if row is None:
            raise NotFound(f"operation '{op_id}' is not a migration")
        return MIGRATIONS.load(row)

    def list_migrations(self, limit: int = 100) -> list[MigrationRecord]:
        return [MIGRATIONS.load(r) for r in self.db.all(
            f"{MIGRATIONS.select} ORDER BY created_at DESC LIMIT ?", (limit,))]

    def unfinished(self) -> list[MigrationRecord]:
        return [MIGRATIONS.load(r) for r in self.db.all(
            f"{MIGRATIONS.select} WHERE status = ?", (MigrationStatus.RUNNING.value,))]

    def unresolved(self, instance_id: int | None = None) -> list[MigrationRecord]:
        """Outgoing migrations whose commit's outcome is unknown (of one instance, or all)."""
        rows = self.db.all(f"{MIGRATIONS.select} WHERE status = ? AND direction = 'out'",
                           (MigrationStatus.UNRESOLVED.value,))
        found = [MIGRATIONS.load(r) for r in rows]
        return [m for m in found if instance_id is None or m.instance_id == instance_id]
