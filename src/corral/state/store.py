"""The state store services use: instances and operations, in SQLite.

A small typed facade over SQLAlchemy so that services never build queries themselves and a
cluster store (etcd) can later offer the same methods.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from corral.domain.errors import Conflict, InvalidInput, NotFound
from corral.domain.instance import Kind
from corral.domain.lifecycle import State
from corral.domain.resources import Resources
from corral.state.db import open_database
from corral.state.hotpath import HotPath, Statement, from_sql_datetime, to_sql_datetime
from corral.state.models import InstanceRow, OperationRow, UserRow


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


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
    status: str
    progress: float
    phase: str
    error: str | None
    created_at: datetime
    updated_at: datetime
    requested_by: str | None = None


def unknown_user(name: str) -> InvalidInput:
    return InvalidInput(f"no user '{name}' (add one with `corral user add {name}`)")


def _instance(row: InstanceRow) -> InstanceRecord:
    return InstanceRecord(
        id=row.id,
        name=row.name,
        kind=Kind(row.kind),
        template=row.template,
        state=State(row.state),
        resources=Resources.from_dict(dict(row.resources)),
        privileged=row.privileged,
        node=row.node,
        created_at=row.created_at,
        owner=row.owner,
    )


def _operation(row: OperationRow) -> OperationRecord:
    return OperationRecord(
        id=row.id,
        action=row.action,
        instance=row.instance,
        status=row.status,
        progress=row.progress,
        phase=row.phase,
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        requested_by=row.requested_by,
    )


# The lifecycle path's statements (hotpath.py says why they are plain SQL); the columns in
# the order of the records' fields
_INSTANCE_COLUMNS = ("id, name, kind, template, state, resources, privileged, node, created_at, "
                     "owner")
_OPERATION_COLUMNS = ("id, action, instance, status, progress, phase, error, created_at, "
                      "updated_at, requested_by")


def _instance_from_sql(row: tuple[Any, ...]) -> InstanceRecord:
    return InstanceRecord(
        id=row[0], name=row[1], kind=Kind(row[2]), template=row[3], state=State(row[4]),
        resources=Resources.from_dict(json.loads(row[5])), privileged=bool(row[6]),
        node=row[7], created_at=from_sql_datetime(row[8]), owner=row[9],
    )


def _operation_from_sql(row: tuple[Any, ...]) -> OperationRecord:
    return OperationRecord(
        id=row[0], action=row[1], instance=row[2], status=row[3], progress=row[4],
        phase=row[5], error=row[6], created_at=from_sql_datetime(row[7]),
        updated_at=from_sql_datetime(row[8]), requested_by=row[9],
    )


def _set_state(instance_state: tuple[int, State] | None) -> list[Statement]:
    if instance_state is None:
        return []
    instance_id, state = instance_state
    return [("UPDATE instances SET state = ? WHERE id = ?", (state.value, instance_id))]


class StateStore:
    def __init__(self, path: Path) -> None:
        self._sessions = open_database(path)
        self._hot = HotPath(path)

    # Instances ------------------------------------------------------------------------
    def list_instances(self) -> list[InstanceRecord]:
        with self._sessions() as s:
            return [_instance(r) for r in s.scalars(select(InstanceRow).order_by(InstanceRow.id))]

    def get_instance(self, ref: str) -> InstanceRecord:
        """By name, or by numeric id."""
        key = "id" if ref.isdigit() else "name"
        row = self._hot.one(f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE {key} = ?",
                            (int(ref) if ref.isdigit() else ref,))
        if row is None:
            raise NotFound(f"no instance '{ref}'")
        return _instance_from_sql(row)

    def insert_instance(
        self, name: str, kind: Kind, template: str, resources: Resources, privileged: bool,
        node: str, first_id: int, owner: str | None = None,
    ) -> InstanceRecord:
        """Reserve the name and the lowest free id atomically; Conflict on a duplicate name,
        InvalidInput for an ``owner`` who is no user."""
        with self._sessions() as s, s.begin():
            if s.scalars(select(InstanceRow).where(InstanceRow.name == name)).first():
                raise Conflict(f"an instance named '{name}' already exists")
            if owner is not None and s.get(UserRow, owner) is None:
                raise unknown_user(owner)
            used = set(s.scalars(select(InstanceRow.id)))
            new_id = first_id
            while new_id in used:
                new_id += 1
            row = InstanceRow(
                id=new_id, name=name, kind=kind.value, template=template,
                state=State.CREATING.value, resources=resources.to_dict(),
                privileged=privileged, node=node, created_at=utcnow(), owner=owner,
            )
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                raise Conflict(f"an instance named '{name}' already exists") from None
            return _instance(row)

    def set_state(self, instance_id: int, state: State) -> None:
        with self._sessions() as s, s.begin():
            s.execute(
                update(InstanceRow).where(InstanceRow.id == instance_id).values(state=state.value)
            )

    def set_kind(self, instance_id: int, kind: Kind) -> None:
        """Conversion between a container and a VM: same row, same id, name and NICs."""
        with self._sessions() as s, s.begin():
            s.execute(
                update(InstanceRow).where(InstanceRow.id == instance_id).values(kind=kind.value)
            )

    def set_resources(self, instance_id: int, resources: Resources) -> None:
        with self._sessions() as s, s.begin():
            row = s.get(InstanceRow, instance_id)
            if row is not None:
                row.resources = resources.to_dict()

    def set_owner(self, instance_id: int, owner: str | None) -> None:
        with self._sessions() as s, s.begin():
            if owner is not None and s.get(UserRow, owner) is None:
                raise unknown_user(owner)
            s.execute(update(InstanceRow).where(InstanceRow.id == instance_id)
                      .values(owner=owner))

    def user_exists(self, name: str) -> bool:
        with self._sessions() as s:
            return s.get(UserRow, name) is not None

    def delete_instance(self, instance_id: int) -> None:
        with self._sessions() as s, s.begin():
            s.execute(delete(InstanceRow).where(InstanceRow.id == instance_id))

    # Operations -----------------------------------------------------------------------
    def insert_operation(
        self, op_id: str, action: str, instance: str | None,
        instance_state: tuple[int, State] | None = None, requested_by: str | None = None,
    ) -> OperationRecord:
        """``instance_state``: (instance id, state) to set in the same transaction;
        ``requested_by``: the user who started it (None: a built-in admin identity)."""
        now = utcnow()
        record = OperationRecord(
            id=op_id, action=action, instance=instance, status="running", progress=0.0,
            phase="queued", error=None, created_at=now, updated_at=now,
            requested_by=requested_by,
        )
        values = [to_sql_datetime(v) if isinstance(v, datetime) else v
                  for v in vars(record).values()]
        self._hot.write(
            (f"INSERT INTO operations ({_OPERATION_COLUMNS}) VALUES "
             f"({', '.join('?' * len(values))})", values),
            *_set_state(instance_state),
        )
        return record

    def update_operation(
        self, op_id: str, *, status: str | None = None, progress: float | None = None,
        phase: str | None = None, error: str | None = None,
        instance_state: tuple[int, State] | None = None,
    ) -> OperationRecord:
        """Change the given fields; the operation as it is now. ``instance_state``:
        (instance id, state) to set in the same transaction."""
        values: dict[str, object] = {"updated_at": to_sql_datetime(utcnow())}
        for key, value in (("status", status), ("progress", progress), ("phase", phase),
                           ("error", error)):
            if value is not None:
                values[key] = value
        assignments = ", ".join(f"{key} = ?" for key in values)
        found = self._hot.write(
            (f"UPDATE operations SET {assignments} WHERE id = ? RETURNING {_OPERATION_COLUMNS}",
             [*values.values(), op_id]),
            *_set_state(instance_state),
        )
        if found is None:
            raise NotFound(f"no operation '{op_id}'")
        return _operation_from_sql(found)

    def get_operation(self, op_id: str) -> OperationRecord:
        """By full id, or by a unique prefix of at least 4 characters (as list shows them)."""
        with self._sessions() as s:
            row = s.get(OperationRow, op_id)
            if row is None and len(op_id) >= 4 and "%" not in op_id and "_" not in op_id:
                query = select(OperationRow).where(OperationRow.id.startswith(op_id)).limit(2)
                found = list(s.scalars(query))
                if len(found) > 1:
                    raise InvalidInput(f"operation id prefix '{op_id}' is ambiguous")
                row = found[0] if found else None
            if row is None:
                raise NotFound(f"no operation '{op_id}'")
            return _operation(row)

    def list_operations(self, limit: int = 100,
                        requested_by: str | None = None) -> list[OperationRecord]:
        """The newest ``limit`` operations (only those ``requested_by`` a user when given)."""
        with self._sessions() as s:
            query = select(OperationRow).order_by(OperationRow.created_at.desc()).limit(limit)
            if requested_by is not None:
                query = query.where(OperationRow.requested_by == requested_by)
            return [_operation(r) for r in s.scalars(query)]

    def unfinished_operations(self) -> list[OperationRecord]:
        with self._sessions() as s:
            query = select(OperationRow).where(OperationRow.status.in_(("pending", "running")))
            return [_operation(r) for r in s.scalars(query)]
