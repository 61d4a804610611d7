"""Snapshots, backup targets and schedules in the daemon's database (the only code building
their queries)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from corral.domain.errors import Conflict, NotFound
from corral.state.database import (
    Database,
    Mapper,
    from_sql_datetime,
    optional_datetime,
    to_sql_datetime,
    utcnow,
)


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


SNAPSHOTS: Mapper[SnapshotRecord] = Mapper(
    "snapshots",
    ("id", "instance_id", "name", "parent", "memory", "consistency", "method", "created_at"),
    lambda r: SnapshotRecord(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6],
                             from_sql_datetime(r[7])),
    lambda s: (s.id, s.instance_id, s.name, s.parent, s.memory, s.consistency, s.method,
               to_sql_datetime(s.created_at)),
)

TARGETS: Mapper[TargetRecord] = Mapper(
    "backup_targets", ("name", "url", "key_file", "access_key", "secret_key"),
    lambda r: TargetRecord(r[0], r[1], r[2], r[3], r[4]),
    lambda t: (t.name, t.url, t.key_file, t.access_key, t.secret_key),
)
"""(``created_at`` is written on insert and not part of the record.)"""

SCHEDULES: Mapper[ScheduleRecord] = Mapper(
    "backup_schedules",
    ("instance", "target", "daily_at", "keep_last", "keep_daily", "keep_weekly", "last_run",
     "tz", "next_run"),
    lambda r: ScheduleRecord(r[0], r[1], r[2], r[3], r[4], r[5], optional_datetime(r[6]), r[7],
                             optional_datetime(r[8])),
    lambda s: (s.instance, s.target, s.daily_at, s.keep_last, s.keep_daily, s.keep_weekly,
               _optional(s.last_run), s.tz, _optional(s.next_run)),
)


def _optional(when: datetime | None) -> str | None:
    return None if when is None else to_sql_datetime(when)


class BackupStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # Snapshots -------------------------------------------------------------------------
    def snapshots(self, instance_id: int) -> list[SnapshotRecord]:
        return [SNAPSHOTS.load(r) for r in self.db.all(
            f"{SNAPSHOTS.select} WHERE instance_id = ? ORDER BY created_at", (instance_id,))]

    def snapshot(self, instance_id: int, name: str) -> SnapshotRecord:
        row = self.db.one(f"{SNAPSHOTS.select} WHERE instance_id = ? AND name = ?",
                          (instance_id, name))
        if row is None:
            raise NotFound(f"no snapshot '{name}'")
        return SNAPSHOTS.load(row)

    def insert_snapshot(self, record: SnapshotRecord) -> None:
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM snapshots WHERE instance_id = ? AND name = ?",
                            (record.instance_id, record.name)).fetchone():
                raise Conflict(f"a snapshot named '{record.name}' already exists")
            conn.execute(SNAPSHOTS.insert, SNAPSHOTS.dump(record))

    def delete_snapshot(self, record: SnapshotRecord) -> None:
        """Remove one generation; its children take its parent (the tree stays connected)."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE snapshots SET parent = ? WHERE parent = ?",
                         (record.parent, record.id))
            conn.execute("UPDATE snapshot_heads SET snapshot_id = ? WHERE snapshot_id = ?",
                         (record.parent, record.id))
            conn.execute("DELETE FROM snapshots WHERE id = ?", (record.id,))

    def forget_instance(self, instance_id: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM snapshots WHERE instance_id = ?", (instance_id,))
            conn.execute("DELETE FROM snapshot_heads WHERE instance_id = ?", (instance_id,))

    def head(self, instance_id: int) -> str | None:
        row = self.db.one("SELECT snapshot_id FROM snapshot_heads WHERE instance_id = ?",
                          (instance_id,))
        return None if row is None else row[0]

    def set_head(self, instance_id: int, snapshot_id: str | None) -> None:
        self.db.execute("INSERT INTO snapshot_heads (instance_id, snapshot_id) VALUES (?, ?) "
                        "ON CONFLICT (instance_id) DO UPDATE "
                        "SET snapshot_id = excluded.snapshot_id", (instance_id, snapshot_id))

    # Targets ---------------------------------------------------------------------------
    def targets(self) -> list[TargetRecord]:
        return [TARGETS.load(r) for r in self.db.all(f"{TARGETS.select} ORDER BY name")]

    def target(self, name: str) -> TargetRecord | None:
        row = self.db.one(f"{TARGETS.select} WHERE name = ?", (name,))
        return None if row is None else TARGETS.load(row)

    def add_target(self, record: TargetRecord) -> None:
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM backup_targets WHERE name = ?",
                            (record.name,)).fetchone():
                raise Conflict(f"a backup target named '{record.name}' already exists")
            conn.execute(f"INSERT INTO backup_targets ({', '.join(TARGETS.columns)}, "
                         "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                         (*TARGETS.dump(record), to_sql_datetime(utcnow())))

    def remove_target(self, name: str) -> None:
        if not self.db.execute("DELETE FROM backup_targets WHERE name = ?", (name,)):
            raise NotFound(f"no backup target '{name}'")

    # Schedules -------------------------------------------------------------------------
    def schedules(self) -> list[ScheduleRecord]:
        return [SCHEDULES.load(r) for r in self.db.all(SCHEDULES.select)]

    def set_schedule(self, record: ScheduleRecord) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM backup_schedules WHERE instance = ?", (record.instance,))
            conn.execute(SCHEDULES.insert, SCHEDULES.dump(record))

    def remove_schedule(self, instance: str) -> None:
        if not self.db.execute("DELETE FROM backup_schedules WHERE instance = ?", (instance,)):
            raise NotFound(f"no backup schedule for '{instance}'")

    def forget_schedules(self, instance: str | None = None, target: str | None = None) -> None:
        """Drop the schedules of a deleted instance or of a removed target."""
        where = [(column, value) for column, value in (("instance", instance),
                                                       ("target", target)) if value is not None]
        clause = " AND ".join(f"{column} = ?" for column, _ in where) or "1"
        self.db.execute(f"DELETE FROM backup_schedules WHERE {clause}",
                        [value for _, value in where])

    def mark_run(self, instance: str, when: datetime | None, next_run: datetime) -> None:
        """``when``: the run (None: only the next run is set)."""
        self.db.execute("UPDATE backup_schedules SET last_run = COALESCE(?, last_run), "
                        "next_run = ? WHERE instance = ?",
                        (_optional(when), to_sql_datetime(next_run), instance))
