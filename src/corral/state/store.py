"""The state store services use: instances and operations, in the daemon's database.

A small typed facade over SQL so that services never build queries themselves. Instance ids
are chosen here (``domain/ids.py`` decides which, from what this database knows: the ids in
use and the deleted ones still in quarantine); a cluster store can later hand them out
cluster-wide through the same ``IdLedger`` protocol.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from corral.domain.errors import Conflict, InvalidInput, NotFound
from corral.domain.ids import DEFAULT_QUARANTINE, IdPolicy, choose_id
from corral.domain.instance import Kind
from corral.domain.lifecycle import State
from corral.domain.names import is_decimal
from corral.domain.resources import Resources
from corral.domain.statuses import UNFINISHED, OperationStatus
from corral.state.database import (
    Database,
    Mapper,
    Row,
    from_sql_datetime,
    to_sql_datetime,
    utcnow,
)


@dataclass(frozen=True)
class InstanceRecord:
    id: int
    name: str
    kind: Kind
    template: str
    state: State
    resources: Resources
    privileged: bool
    node: str
    created_at: datetime
    owner: str | None = None


@dataclass(frozen=True)
class OperationRecord:
    id: str
    action: str
    instance: str | None
    status: OperationStatus
    progress: float
    phase: str
    error: str | None
    created_at: datetime
    updated_at: datetime
    requested_by: str | None = None
    parent: str | None = None
    """The bulk operation this one is an item of (None: a top-level operation)."""


def unknown_user(name: str) -> InvalidInput:
    return InvalidInput(f"no user '{name}' (add one with `corral user add {name}`)")


INSTANCES: Mapper[InstanceRecord] = Mapper(
    "instances",
    ("id", "name", "kind", "template", "state", "resources", "privileged", "node", "created_at",
     "owner"),
    lambda r: InstanceRecord(
        id=r[0], name=r[1], kind=Kind(r[2]), template=r[3], state=State(r[4]),
        resources=Resources.from_dict(json.loads(r[5])), privileged=bool(r[6]), node=r[7],
        created_at=from_sql_datetime(r[8]), owner=r[9]),
    lambda i: (i.id, i.name, i.kind.value, i.template, i.state.value,
               json.dumps(i.resources.to_dict()), i.privileged, i.node,
               to_sql_datetime(i.created_at), i.owner),
)

OPERATIONS: Mapper[OperationRecord] = Mapper(
    "operations",
    ("id", "action", "instance", "status", "progress", "phase", "error", "created_at",
     "updated_at", "requested_by", "parent"),
    lambda r: OperationRecord(
        id=r[0], action=r[1], instance=r[2], status=OperationStatus(r[3]), progress=r[4],
        phase=r[5], error=r[6], created_at=from_sql_datetime(r[7]),
        updated_at=from_sql_datetime(r[8]), requested_by=r[9], parent=r[10]),
    lambda o: (o.id, o.action, o.instance, o.status.value, o.progress, o.phase, o.error,
               to_sql_datetime(o.created_at), to_sql_datetime(o.updated_at), o.requested_by,
               o.parent),
)
_UPSERT_OPERATION = OPERATIONS.insert + " ON CONFLICT(id) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in OPERATIONS.columns if c not in ("id", "created_at"))
"""A child of a bulk operation is recorded pending first; it becomes running in place."""

_SET_STATE = "UPDATE instances SET state = ? WHERE id = ?"


class LocalIds:
    """The ``IdLedger`` of one host's database, read inside the transaction that inserts."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def ids_in_use(self) -> list[int]:
        return [r[0] for r in self._conn.execute("SELECT id FROM instances")]

    def retired_ids(self) -> Mapping[int, datetime]:
        return {r[0]: from_sql_datetime(r[1])
                for r in self._conn.execute("SELECT id, retired_at FROM retired_ids")}


def _set_state(conn: sqlite3.Connection, instance_state: tuple[int, State] | None) -> None:
    if instance_state is not None:
        instance_id, state = instance_state
        conn.execute(_SET_STATE, (state.value, instance_id))


class StateStore:
    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock
        self.id_quarantine: Callable[[], timedelta | None] = lambda: DEFAULT_QUARANTINE
        """How long a deleted id stays unused (None: forever); the daemon wires the host
        policy's ``id_quarantine`` here."""

    # Instances ------------------------------------------------------------------------
    def list_instances(self) -> list[InstanceRecord]:
        """Every instance by id (read again only after a write: ``Database.unchanged_since``)."""
        return list(self.db.unchanged_since("instances", lambda: INSTANCES.load_all(
            self.db.all(f"{INSTANCES.select} ORDER BY id"))))

    def get_instance(self, ref: str) -> InstanceRecord:
        """By name, or by numeric id."""
        key = "id" if is_decimal(ref) else "name"
        row = self.db.one(f"{INSTANCES.select} WHERE {key} = ?",
                          (int(ref) if is_decimal(ref) else ref,))
        if row is None:
            raise NotFound(f"no instance '{ref}'")
        return INSTANCES.load(row)

    def insert_instance(
        self, name: str, kind: Kind, template: str, resources: Resources, privileged: bool,
        node: str, first_id: int, owner: str | None = None,
    ) -> InstanceRecord:
        """Reserve the name and an id atomically: the lowest free one from ``first_id`` up
        that is not in quarantine (``domain/ids.py``). Conflict on a duplicate name,
        InvalidInput for an ``owner`` who is no user."""
        policy = IdPolicy(self.id_quarantine(), first_id)
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM instances WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"an instance named '{name}' already exists")
            if owner is not None and not _user_exists(conn, owner):
                raise unknown_user(owner)
            ledger = LocalIds(conn)
            now = self.clock()
            record = InstanceRecord(
                id=choose_id(ledger.ids_in_use(), ledger.retired_ids(), policy, now),
                name=name, kind=kind, template=template, state=State.CREATING,
                resources=resources, privileged=privileged, node=node, created_at=now,
                owner=owner,
            )
            conn.execute(INSTANCES.insert, INSTANCES.dump(record))
            return record

    def allocated(self) -> tuple[int, int, int]:
        """(CPUs, memory bytes, disk bytes) every instance is given, summed by SQLite: one
        query, no row parsed here (an admission check runs on every create, under a lock)."""
        row = self.db.one(
            "SELECT COALESCE(SUM(json_extract(resources, '$.cpus')), 0), "
            "COALESCE(SUM(json_extract(resources, '$.memory')), 0), "
            "COALESCE(SUM(json_extract(resources, '$.disk')), 0) FROM instances")
        assert row is not None  # an aggregate always answers one row
        return int(row[0]), int(row[1]), int(row[2])

    # Labels ---------------------------------------------------------------------------
    def labels(self, instance_id: int) -> dict[str, str]:
        return dict(self.db.all(
            "SELECT key, value FROM instance_labels WHERE instance_id = ? ORDER BY key",
            (instance_id,)))

    def all_labels(self) -> dict[int, dict[str, str]]:
        """Every instance's labels (those with none are left out), one query."""
        found: dict[int, dict[str, str]] = {}
        for instance_id, key, value in self.db.all(
                "SELECT instance_id, key, value FROM instance_labels ORDER BY key"):
            found.setdefault(instance_id, {})[key] = value
        return found

    def change_labels(self, instance_id: int, set_: Mapping[str, str],
                      unset: list[str], check: Callable[[dict[str, str]], None]) -> dict[str, str]:
        """Set and remove labels in one transaction; ``check`` sees the resulting set
        (and may refuse it, changing nothing). The labels as they are then."""
        with self.db.transaction() as conn:
            current = dict(conn.execute(
                "SELECT key, value FROM instance_labels WHERE instance_id = ?", (instance_id,)))
            after = {k: v for k, v in {**current, **set_}.items() if k not in unset}
            check(after)
            conn.executemany("DELETE FROM instance_labels WHERE instance_id = ? AND key = ?",
                             [(instance_id, k) for k in unset])
            conn.executemany(
                "INSERT INTO instance_labels (instance_id, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT(instance_id, key) DO UPDATE SET value = excluded.value",
                [(instance_id, k, v) for k, v in set_.items() if k not in unset])
        return dict(sorted(after.items()))

    def set_state(self, instance_id: int, state: State) -> None:
        self.db.execute(_SET_STATE, (state.value, instance_id))

    def set_stop_reason(self, instance_id: int, reason: str) -> None:
        """Why the instance stopped without Corral stopping it (kept until its next start)."""
        self.db.execute(
            "INSERT INTO stop_reasons (instance_id, reason, at) VALUES (?, ?, ?) "
            "ON CONFLICT(instance_id) DO UPDATE SET reason = excluded.reason, at = excluded.at",
            (instance_id, reason[:512], to_sql_datetime(self.clock())))

    def clear_stop_reason(self, instance_id: int) -> None:
        self.db.execute("DELETE FROM stop_reasons WHERE instance_id = ?", (instance_id,))

    def stop_reasons(self) -> dict[int, str]:
        """Every instance's stop reason (one query for a whole list)."""
        return {r[0]: r[1] for r in self.db.all("SELECT instance_id, reason FROM stop_reasons")}

    def stop_reason(self, instance_id: int) -> str | None:
        row = self.db.one("SELECT reason FROM stop_reasons WHERE instance_id = ?",
                          (instance_id,))
        return None if row is None else str(row[0])

    def set_kind(self, instance_id: int, kind: Kind) -> None:
        """Conversion between a container and a VM: same row, same id, name and NICs."""
        self.db.execute("UPDATE instances SET kind = ? WHERE id = ?", (kind.value, instance_id))

    def set_resources(self, instance_id: int, resources: Resources) -> None:
        self.db.execute("UPDATE instances SET resources = ? WHERE id = ?",
                        (json.dumps(resources.to_dict()), instance_id))

    def set_owner(self, instance_id: int, owner: str | None) -> None:
        with self.db.transaction() as conn:
            if owner is not None and not _user_exists(conn, owner):
                raise unknown_user(owner)
            conn.execute("UPDATE instances SET owner = ? WHERE id = ?", (owner, instance_id))

    def user_exists(self, name: str) -> bool:
        return self.db.one("SELECT 1 FROM users WHERE name = ?", (name,)) is not None

    def retired_ids(self) -> Mapping[int, datetime]:
        """Every deleted id on record and when it was deleted (the quarantine's ledger)."""
        return {r[0]: from_sql_datetime(r[1])
                for r in self.db.all("SELECT id, retired_at FROM retired_ids")}

    def delete_instance(self, instance_id: int, retire: bool = True) -> None:
        """Remove the row; its id is retired (kept out of use for the quarantine) unless
        not ``retire`` (it migrated away and lives on: ids shared in a cluster)."""
        with self.db.transaction() as conn:
            if conn.execute("DELETE FROM instances WHERE id = ?", (instance_id,)).rowcount \
                    and retire:
                conn.execute("INSERT OR REPLACE INTO retired_ids (id, retired_at) VALUES (?, ?)",
                             (instance_id, to_sql_datetime(self.clock())))

    # Operations -----------------------------------------------------------------------
    def insert_operation(
        self, op_id: str, action: str, instance: str | None,
        instance_state: tuple[int, State] | None = None, requested_by: str | None = None,
        parent: str | None = None,
    ) -> OperationRecord:
        """``instance_state``: (instance id, state) to set in the same transaction;
        ``requested_by``: the user who started it (None: a built-in admin identity);
        ``parent``: the bulk operation it is an item of (its pending row, if it has one
        under ``op_id``, becomes this running one)."""
        now = utcnow()
        record = OperationRecord(
            id=op_id, action=action, instance=instance, status=OperationStatus.RUNNING,
            progress=0.0, phase="queued", error=None, created_at=now, updated_at=now,
            requested_by=requested_by, parent=parent,
        )
        with self.db.transaction() as conn:
            conn.execute(_UPSERT_OPERATION if parent else OPERATIONS.insert,
                         OPERATIONS.dump(record))
            _set_state(conn, instance_state)
        return record

    def insert_children(
        self, parent: str, items: list[tuple[str, str, str | None]],
        requested_by: str | None = None,
    ) -> list[OperationRecord]:
        """Pending child operations of ``parent``: (id, action, instance) each, one
        transaction."""
        now = utcnow()
        records = [OperationRecord(
            id=op_id, action=action, instance=instance, status=OperationStatus.PENDING,
            progress=0.0, phase="queued", error=None, created_at=now, updated_at=now,
            requested_by=requested_by, parent=parent) for op_id, action, instance in items]
        with self.db.transaction() as conn:
            conn.executemany(OPERATIONS.insert, [OPERATIONS.dump(r) for r in records])
        return records

    def children(self, parent: str) -> list[OperationRecord]:
        """The items of a bulk operation, in the order they were recorded."""
        return [OPERATIONS.load(r) for r in self.db.all(
            f"{OPERATIONS.select} WHERE parent = ? ORDER BY rowid", (parent,))]

    def update_operation(
        self, op_id: str, *, status: OperationStatus | None = None,
        progress: float | None = None, phase: str | None = None, error: str | None = None,
        instance_state: tuple[int, State] | None = None,
    ) -> OperationRecord:
        """Change the given fields; the operation as it is now. ``instance_state``:
        (instance id, state) to set in the same transaction."""
        values: dict[str, object] = {"updated_at": to_sql_datetime(utcnow())}
        for key, value in (("status", None if status is None else status.value),
                           ("progress", progress), ("phase", phase), ("error", error)):
            if value is not None:
                values[key] = value
        assignments = ", ".join(f"{key} = ?" for key in values)
        with self.db.transaction() as conn:
            cursor = conn.execute(
                f"UPDATE operations SET {assignments} WHERE id = ? "
                f"RETURNING {', '.join(OPERATIONS.columns)}", [*values.values(), op_id])
            found: Row | None = cursor.fetchone()
            cursor.fetchall()  # a RETURNING statement completes only once read to its end
            if found is None:
                raise NotFound(f"no operation '{op_id}'")
            _set_state(conn, instance_state)
        return OPERATIONS.load(found)

    def update_progress(self, changes: Mapping[str, tuple[float, str]]) -> None:
        """(progress, phase) of running operations, by id, in one transaction; an operation
        no longer running keeps its row (its final one)."""
        if not changes:
            return
        now = to_sql_datetime(utcnow())
        running = OperationStatus.RUNNING.value
        with self.db.transaction() as conn:
            conn.executemany(
                "UPDATE operations SET progress = ?, phase = ?, updated_at = ? "
                "WHERE id = ? AND status = ?",
                [(fraction, phase, now, op_id, running)
                 for op_id, (fraction, phase) in changes.items()])

    def get_operation(self, op_id: str) -> OperationRecord:
        """By full id, or by a unique prefix of at least 4 characters (as list shows them)."""
        row = self.db.one(f"{OPERATIONS.select} WHERE id = ?", (op_id,))
        if row is None and len(op_id) >= 4 and "%" not in op_id and "_" not in op_id:
            found = self.db.all(f"{OPERATIONS.select} WHERE id LIKE ? LIMIT 2", (op_id + "%",))
            if len(found) > 1:
                raise InvalidInput(f"operation id prefix '{op_id}' is ambiguous")
            row = found[0] if found else None
        if row is None:
            raise NotFound(f"no operation '{op_id}'")
        return OPERATIONS.load(row)

    def list_operations(self, limit: int = 100, requested_by: str | None = None,
                        children: bool = False) -> list[OperationRecord]:
        """The newest ``limit`` operations (only those ``requested_by`` a user when given;
        the items of bulk operations only with ``children``)."""
        clauses: list[str] = [] if children else ["parent IS NULL"]
        params: list[object] = []
        if requested_by is not None:
            clauses.append("requested_by = ?")
            params.append(requested_by)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return [OPERATIONS.load(r) for r in self.db.all(
            f"{OPERATIONS.select}{where} ORDER BY created_at DESC LIMIT ?", [*params, limit])]

    def unfinished_operations(self) -> list[OperationRecord]:
        marks = ", ".join("?" * len(UNFINISHED))
        return [OPERATIONS.load(r) for r in self.db.all(
            f"{OPERATIONS.select} WHERE status IN ({marks})", [s.value for s in UNFINISHED])]


def _user_exists(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is not None
