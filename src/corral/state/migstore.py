"""Remotes and migration records in the daemon's SQLite database."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select

from corral.domain.errors import Conflict, NotFound
from corral.state.db import open_database
from corral.state.migmodels import MigrationRow, RemoteRow
from corral.state.store import utcnow


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
    status: str
    phase: str
    operation: str | None
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


def _remote(row: RemoteRow) -> RemoteRecord:
    return RemoteRecord(row.name, row.url, row.token, row.fingerprint, row.cert_pem,
                        row.created_at)


def _migration(row: MigrationRow) -> MigrationRecord:
    return MigrationRecord(
        id=row.id, direction=row.direction, instance=row.instance,
        instance_id=row.instance_id, kind=row.kind, peer=row.peer, path=row.path,
        status=row.status, phase=row.phase, operation=row.operation,
        details=dict(row.details), error=row.error, created_at=row.created_at,
        updated_at=row.updated_at,
    )


class MigrationStore:
    def __init__(self, path: Path) -> None:
        self._sessions = open_database(path)

    # Remotes --------------------------------------------------------------------------
    def list_remotes(self) -> list[RemoteRecord]:
        with self._sessions() as s:
            return [_remote(r) for r in s.scalars(select(RemoteRow).order_by(RemoteRow.name))]

    def get_remote(self, name: str) -> RemoteRecord:
        with self._sessions() as s:
            row = s.get(RemoteRow, name)
            if row is None:
                raise NotFound(f"no remote '{name}' (corral remote add {name} URL --token T)")
            return _remote(row)

    def put_remote(self, remote: RemoteRecord, replace: bool = False) -> None:
        with self._sessions() as s, s.begin():
            row = s.get(RemoteRow, remote.name)
            if row is not None and not replace:
                raise Conflict(f"a remote named '{remote.name}' exists; remove it first")
            if row is None:
                row = RemoteRow(name=remote.name, created_at=utcnow())
                s.add(row)
            row.url, row.token = remote.url, remote.token
            row.fingerprint, row.cert_pem = remote.fingerprint, remote.cert_pem

    def delete_remote(self, name: str) -> None:
        with self._sessions() as s, s.begin():
            if s.execute(delete(RemoteRow).where(RemoteRow.name == name)).rowcount == 0:
                raise NotFound(f"no remote '{name}'")

    # Migrations -----------------------------------------------------------------------
    def insert_migration(self, rec: MigrationRecord) -> None:
        now = utcnow()
        with self._sessions() as s, s.begin():
            s.add(MigrationRow(
                id=rec.id, direction=rec.direction, instance=rec.instance,
                instance_id=rec.instance_id, kind=rec.kind, peer=rec.peer, path=rec.path,
                status=rec.status, phase=rec.phase, operation=rec.operation,
                details=dict(rec.details), error=rec.error, created_at=now, updated_at=now,
            ))

    def update_migration(self, mid: str, **values: Any) -> MigrationRecord:
        with self._sessions() as s, s.begin():
            row = s.get(MigrationRow, mid)
            if row is None:
                raise NotFound(f"no migration '{mid}'")
            details = values.pop("details", None)
            for key, value in values.items():
                setattr(row, key, value)
            if details is not None:
                row.details = {**dict(row.details), **details}
            row.updated_at = utcnow()
            return _migration(row)

    def get_migration(self, mid: str) -> MigrationRecord:
        with self._sessions() as s:
            row = s.get(MigrationRow, mid)
            if row is None:
                raise NotFound(f"no migration '{mid}'")
            return _migration(row)

    def find_by_operation(self, op_id: str) -> MigrationRecord:
        with self._sessions() as s:
            row = s.scalars(select(MigrationRow).where(MigrationRow.operation == op_id)).first()
            if row is None:
                raise NotFound(f"operation '{op_id}' is not a migration")
            return _migration(row)

    def list_migrations(self, limit: int = 100) -> list[MigrationRecord]:
        with self._sessions() as s:
            query = select(MigrationRow).order_by(MigrationRow.created_at.desc()).limit(limit)
            return [_migration(r) for r in s.scalars(query)]

    def unfinished(self) -> list[MigrationRecord]:
        with self._sessions() as s:
            query = select(MigrationRow).where(MigrationRow.status == "running")
            return [_migration(r) for r in s.scalars(query)]
