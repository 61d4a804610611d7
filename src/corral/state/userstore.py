"""Users in SQLite (the only code building their queries). Tokens are kept as hashes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, select, update

from corral.domain.errors import Conflict, NotFound
from corral.domain.users import Role
from corral.state.db import open_database
from corral.state.models import InstanceRow, UserRow
from corral.state.store import utcnow


@dataclass(frozen=True)
class UserRecord:
    name: str
    role: Role
    created_at: datetime


def _user(row: UserRow) -> UserRecord:
    return UserRecord(row.name, Role(row.role), row.created_at)


class UserStore:
    def __init__(self, path: Path) -> None:
        self._sessions = open_database(path)

    def add(self, name: str, role: Role, token_hash: str) -> UserRecord:
        with self._sessions() as s, s.begin():
            if s.get(UserRow, name) is not None:
                raise Conflict(f"a user named '{name}' already exists")
            row = UserRow(name=name, role=role.value, token_hash=token_hash, created_at=utcnow())
            s.add(row)
            return _user(row)

    def list_users(self) -> list[UserRecord]:
        with self._sessions() as s:
            return [_user(r) for r in s.scalars(select(UserRow).order_by(UserRow.name))]

    def get(self, name: str) -> UserRecord:
        with self._sessions() as s:
            row = s.get(UserRow, name)
            if row is None:
                raise NotFound(f"no user '{name}'")
            return _user(row)

    def by_token_hash(self, token_hash: str) -> UserRecord | None:
        with self._sessions() as s:
            row = s.scalars(select(UserRow).where(UserRow.token_hash == token_hash)).first()
            return None if row is None else _user(row)

    def set_token_hash(self, name: str, token_hash: str) -> None:
        with self._sessions() as s, s.begin():
            done = s.execute(update(UserRow).where(UserRow.name == name)
                             .values(token_hash=token_hash))
            if done.rowcount == 0:
                raise NotFound(f"no user '{name}'")

    def owned(self, name: str) -> list[str]:
        """Names of the instances ``name`` owns."""
        with self._sessions() as s:
            return list(s.scalars(select(InstanceRow.name).where(InstanceRow.owner == name)
                                  .order_by(InstanceRow.name)))

    def remove(self, name: str) -> None:
        """Refused (Conflict, naming them) while the user owns instances."""
        with self._sessions() as s, s.begin():
            if s.get(UserRow, name) is None:
                raise NotFound(f"no user '{name}'")
            owned = list(s.scalars(select(InstanceRow.name).where(InstanceRow.owner == name)
                                   .order_by(InstanceRow.name)))
            if owned:
                raise Conflict(f"user '{name}' still owns {', '.join(owned)}: delete them or "
                               "give them another owner (`corral owner NAME OTHER|--none`)")
            s.execute(delete(UserRow).where(UserRow.name == name))
