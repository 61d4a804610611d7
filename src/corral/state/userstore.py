"""Users in the daemon's database (the only code building their queries). Tokens and console
passwords are kept as hashes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from corral.domain.errors import Conflict, NotFound
from corral.domain.users import Role
from corral.state.database import Database, Mapper, from_sql_datetime, to_sql_datetime, utcnow


@dataclass(frozen=True)
class UserRecord:
    name: str
    role: Role
    created_at: datetime


USERS: Mapper[UserRecord] = Mapper(
    "users", ("name", "role", "created_at"),
    lambda r: UserRecord(r[0], Role(r[1]), from_sql_datetime(r[2])),
    lambda u: (u.name, u.role.value, to_sql_datetime(u.created_at)),
)
"""The token hash is never read back into a record: it is written and matched only."""


class UserStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, name: str, role: Role, token_hash: str) -> UserRecord:
        record = UserRecord(name, role, utcnow())
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"a user named '{name}' already exists")
            conn.execute("INSERT INTO users (name, role, created_at, token_hash) "
                         "VALUES (?, ?, ?, ?)", (*USERS.dump(record), token_hash))
        return record

    def list_users(self) -> list[UserRecord]:
        return [USERS.load(r) for r in self.db.all(f"{USERS.select} ORDER BY name")]

    def get(self, name: str) -> UserRecord:
        row = self.db.one(f"{USERS.select} WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"no user '{name}'")
        return USERS.load(row)

    def by_token_hash(self, token_hash: str) -> UserRecord | None:
        row = self.db.one(f"{USERS.select} WHERE token_hash = ?", (token_hash,))
        return None if row is None else USERS.load(row)

    def set_token_hash(self, name: str, token_hash: str) -> None:
        if not self.db.execute("UPDATE users SET token_hash = ? WHERE name = ?",
                               (token_hash, name)):
            raise NotFound(f"no user '{name}'")

    def set_password_hash(self, name: str, password_hash: str | None) -> None:
        if not self.db.execute("UPDATE users SET password_hash = ? WHERE name = ?",
                               (password_hash, name)):
            raise NotFound(f"no user '{name}'")

    def password_hash(self, name: str) -> tuple[UserRecord, str | None] | None:
        """The user and its password hash (None: no password set); None: no such user."""
        row = self.db.one(f"SELECT {', '.join(USERS.columns)}, password_hash FROM users "
                          "WHERE name = ?", (name,))
        return None if row is None else (USERS.load(row[:-1]), row[-1])

    def owned(self, name: str) -> list[str]:
        """Names of the instances ``name`` owns."""
        return self.db.column("SELECT name FROM instances WHERE owner = ? ORDER BY name",
                              (name,))

    def remove(self, name: str) -> None:
        """Refused (Conflict, naming them) while the user owns instances."""
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is None:
                raise NotFound(f"no user '{name}'")
            owned = [r[0] for r in conn.execute(
                "SELECT name FROM instances WHERE owner = ? ORDER BY name", (name,))]
            if owned:
                raise Conflict(f"user '{name}' still owns {', '.join(owned)}: delete them or "
                               "give them another owner (`corral owner NAME OTHER|--none`)")
            conn.execute("DELETE FROM tokens WHERE user = ?", (name,))
            conn.execute("DELETE FROM users WHERE name = ?", (name,))


@dataclass(frozen=True)
class TokenRecord:
    """An extra token of a user, narrower than the user: read-only, or limited to named
    instances (None: all the user may reach)."""

    id: str
    user: str
    read_only: bool
    instances: tuple[str, ...] | None
    created_at: datetime


TOKENS: Mapper[TokenRecord] = Mapper(
    "tokens", ("id", "user", "read_only", "instances", "created_at"),
    lambda r: TokenRecord(r[0], r[1], bool(r[2]),
                          None if r[3] is None else tuple(json.loads(r[3])),
                          from_sql_datetime(r[4])),
    lambda t: (t.id, t.user, int(t.read_only),
               None if t.instances is None else json.dumps(list(t.instances)),
               to_sql_datetime(t.created_at)),
)


class TokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, record: TokenRecord, token_hash: str) -> TokenRecord:
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (record.user,)).fetchone() \
                    is None:
                raise NotFound(f"no user '{record.user}'")
            conn.execute(f"INSERT INTO tokens ({', '.join(TOKENS.columns)}, token_hash) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (*TOKENS.dump(record), token_hash))
        return record

    def list_tokens(self, user: str | None = None) -> list[TokenRecord]:
        if user is None:
            return [TOKENS.load(r) for r in self.db.all(f"{TOKENS.select} ORDER BY user, id")]
        return [TOKENS.load(r) for r in self.db.all(
            f"{TOKENS.select} WHERE user = ? ORDER BY id", (user,))]

    def get(self, token_id: str) -> TokenRecord:
        row = self.db.one(f"{TOKENS.select} WHERE id = ?", (token_id,))
        if row is None:
            raise NotFound(f"no token '{token_id}'")
        return TOKENS.load(row)

    def by_hash(self, token_hash: str) -> tuple[TokenRecord, UserRecord] | None:
        row = self.db.one(f"{TOKENS.select} WHERE token_hash = ?", (token_hash,))
        if row is None:
            return None
        token = TOKENS.load(row)
        user = self.db.one(f"{USERS.select} WHERE name = ?", (token.user,))
        return None if user is None else (token, USERS.load(user))

    def remove(self, token_id: str) -> None:
        if not self.db.execute("DELETE FROM tokens WHERE id = ?", (token_id,)):
            raise NotFound(f"no token '{token_id}'")
