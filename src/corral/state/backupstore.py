"""Snapshots, backup targets and schedules in SQLite (the only code building their queries)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, select, update

from corral.domain.errors import Conflict, NotFound
from corral.state.backupmodels import (
    BackupScheduleRow,
    BackupTargetRow,
    SnapshotHeadRow,
    SnapshotRow,
)
from corral.state.db import open_database
from corral.state.store import utcnow


@dataclass(frozen=True)
class SnapshotRecord:
    id: str
    instance_id: int
    name: str
    parent: str | None
    memory: bool
    consistency: str
    method: str
    created_at: datetime


@dataclass(frozen=True)
class TargetRecord:
    name: str
    url: str
    key_file: str | None
    access_key: str | None
    secret_key: str | None


@dataclass(frozen=True)
class ScheduleRecord:
    instance: str
    target: str
    daily_at: str
    keep_last: int
    keep_daily: int
    keep_weekly: int
    last_run: datetime | None
    """UTC (naive, as every time in the database)."""
    tz: str | None = None
    """The IANA zone ``daily_at`` is in; None (schedules set before 0008): the host's."""
    next_run: datetime | None = None
    """UTC; None (schedules set before 0008): computed by the scheduler."""


def _snapshot(row: SnapshotRow) -> SnapshotRecord:
    return SnapshotRecord(row.id, row.instance_id, row.name, row.parent, row.memory,
                          row.consistency, row.method, row.created_at)


def _schedule(row: BackupScheduleRow) -> ScheduleRecord:
    return ScheduleRecord(row.instance, row.target, row.daily_at, row.keep_last,
                          row.keep_daily, row.keep_weekly, row.last_run, row.tz, row.next_run)


class BackupStore:
    def __init__(self, path: Path) -> None:
        self._sessions = open_database(path)

    # Snapshots -------------------------------------------------------------------------
    def snapshots(self, instance_id: int) -> list[SnapshotRecord]:
        with self._sessions() as s:
            query = (select(SnapshotRow).where(SnapshotRow.instance_id == instance_id)
                     .order_by(SnapshotRow.created_at))
            return [_snapshot(r) for r in s.scalars(query)]

    def snapshot(self, instance_id: int, name: str) -> SnapshotRecord:
        with self._sessions() as s:
            row = s.scalars(select(SnapshotRow).where(
                SnapshotRow.instance_id == instance_id, SnapshotRow.name == name)).first()
            if row is None:
                raise NotFound(f"no snapshot '{name}'")
            return _snapshot(row)

    def insert_snapshot(self, record: SnapshotRecord) -> None:
        with self._sessions() as s, s.begin():
            if s.scalars(select(SnapshotRow).where(
                    SnapshotRow.instance_id == record.instance_id,
                    SnapshotRow.name == record.name)).first():
                raise Conflict(f"a snapshot named '{record.name}' already exists")
            s.add(SnapshotRow(**record.__dict__))

    def delete_snapshot(self, record: SnapshotRecord) -> None:
        """Remove one generation; its children take its parent (the tree stays connected)."""
        with self._sessions() as s, s.begin():
            s.execute(update(SnapshotRow).where(SnapshotRow.parent == record.id)
                      .values(parent=record.parent))
            s.execute(update(SnapshotHeadRow).where(SnapshotHeadRow.snapshot_id == record.id)
                      .values(snapshot_id=record.parent))
            s.execute(delete(SnapshotRow).where(SnapshotRow.id == record.id))

    def forget_instance(self, instance_id: int) -> None:
        with self._sessions() as s, s.begin():
            s.execute(delete(SnapshotRow).where(SnapshotRow.instance_id == instance_id))
            s.execute(delete(SnapshotHeadRow).where(SnapshotHeadRow.instance_id == instance_id))

    def head(self, instance_id: int) -> str | None:
        with self._sessions() as s:
            row = s.get(SnapshotHeadRow, instance_id)
            return None if row is None else row.snapshot_id

    def set_head(self, instance_id: int, snapshot_id: str | None) -> None:
        with self._sessions() as s, s.begin():
            row = s.get(SnapshotHeadRow, instance_id)
            if row is None:
                s.add(SnapshotHeadRow(instance_id=instance_id, snapshot_id=snapshot_id))
            else:
                row.snapshot_id = snapshot_id

    # Targets ---------------------------------------------------------------------------
    def targets(self) -> list[TargetRecord]:
        with self._sessions() as s:
            return [TargetRecord(r.name, r.url, r.key_file, r.access_key, r.secret_key)
                    for r in s.scalars(select(BackupTargetRow).order_by(BackupTargetRow.name))]

    def target(self, name: str) -> TargetRecord | None:
        with self._sessions() as s:
            r = s.get(BackupTargetRow, name)
            return None if r is None else TargetRecord(
                r.name, r.url, r.key_file, r.access_key, r.secret_key)

    def add_target(self, record: TargetRecord) -> None:
        with self._sessions() as s, s.begin():
            if s.get(BackupTargetRow, record.name) is not None:
                raise Conflict(f"a backup target named '{record.name}' already exists")
            s.add(BackupTargetRow(**record.__dict__, created_at=utcnow()))

    def remove_target(self, name: str) -> None:
        with self._sessions() as s, s.begin():
            if s.execute(delete(BackupTargetRow).where(BackupTargetRow.name == name)
                         ).rowcount == 0:
                raise NotFound(f"no backup target '{name}'")

    # Schedules -------------------------------------------------------------------------
    def schedules(self) -> list[ScheduleRecord]:
        with self._sessions() as s:
            return [_schedule(r) for r in s.scalars(select(BackupScheduleRow))]

    def set_schedule(self, record: ScheduleRecord) -> None:
        with self._sessions() as s, s.begin():
            s.execute(delete(BackupScheduleRow)
                      .where(BackupScheduleRow.instance == record.instance))
            s.add(BackupScheduleRow(**record.__dict__))

    def remove_schedule(self, instance: str) -> None:
        with self._sessions() as s, s.begin():
            if s.execute(delete(BackupScheduleRow)
                         .where(BackupScheduleRow.instance == instance)).rowcount == 0:
                raise NotFound(f"no backup schedule for '{instance}'")

    def forget_schedules(self, instance: str | None = None, target: str | None = None) -> None:
        """Drop the schedules of a deleted instance or of a removed target."""
        with self._sessions() as s, s.begin():
            query = delete(BackupScheduleRow)
            if instance is not None:
                query = query.where(BackupScheduleRow.instance == instance)
            if target is not None:
                query = query.where(BackupScheduleRow.target == target)
            s.execute(query)

    def mark_run(self, instance: str, when: datetime | None, next_run: datetime) -> None:
        """``when``: the run (None: only the next run is set)."""
        values: dict[str, datetime] = {"next_run": next_run}
        if when is not None:
            values["last_run"] = when
        with self._sessions() as s, s.begin():
            s.execute(update(BackupScheduleRow).where(BackupScheduleRow.instance == instance)
                      .values(**values))
