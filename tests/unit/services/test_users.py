"""Users and owners in a real SQLite database (migrated to head, foreign keys on)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from corral.domain.errors import Conflict, InvalidInput, NotFound
from corral.domain.instance import Kind
from corral.domain.resources import Resources
from corral.domain.users import Role, token_hash
from corral.services.users import UserService
from corral.state.database import Database
from corral.state.store import StateStore
from corral.state.userstore import UserStore


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database.open(tmp_path / "corral.db")


def test_tokens_are_kept_as_hashes_rotated_and_revoked(db: Database) -> None:
    users = UserService(UserStore(db))
    alice, token = users.add("alice")
    assert alice.role is Role.OWNER and token.startswith("crl_")
    caller = users.authenticate(token)
    assert caller is not None and (caller.name, caller.role, caller.user) == (
        "alice", Role.OWNER, True)
    stored = db.column("SELECT token_hash FROM users")[0]  # only the hash is stored
    assert stored == token_hash(token) and token not in stored
    assert users.authenticate("crl_" + "x" * 43) is None
    assert users.authenticate("not-a-user-token") is None
    new = users.rotate("alice")
    assert users.authenticate(token) is None
    assert users.authenticate(new) is not None
    users.remove("alice")
    assert users.authenticate(new) is None
    with pytest.raises(NotFound, match="no user 'alice'"):
        users.rotate("alice")


def test_names_roles_and_duplicates(db: Database) -> None:
    users = UserService(UserStore(db))
    with pytest.raises(InvalidInput, match="user name 'Alice' is not a DNS label"):
        users.add("Alice")
    with pytest.raises(InvalidInput, match="role 'root' is not one of: admin, operator, owner"):
        users.add("alice", "root")
    assert users.add("carol", "admin")[0].role is Role.ADMIN
    with pytest.raises(Conflict, match="a user named 'carol' already exists"):
        users.add("carol")
    assert [u.name for u in users.list()] == ["carol"]


def test_owners_must_exist_and_cannot_be_removed_while_owning(db: Database) -> None:
    users, state = UserService(UserStore(db)), StateStore(db)
    users.add("bob")
    with pytest.raises(InvalidInput, match="no user 'ghost'"):
        state.insert_instance("web", Kind.CT, "tiny", Resources(), False, "n", 101,
                              owner="ghost")
    assert state.list_instances() == []
    rec = state.insert_instance("web", Kind.CT, "tiny", Resources(), False, "n", 101,
                                owner="bob")
    assert state.get_instance("web").owner == "bob"
    with pytest.raises(Conflict, match="user 'bob' still owns web"):
        users.remove("bob")
    with pytest.raises(InvalidInput, match="no user 'ghost'"):
        state.set_owner(rec.id, "ghost")
    # The database itself refuses what the checks above refuse (the REFERENCES of 0007).
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE instances SET owner = 'ghost'")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("DELETE FROM users WHERE name = 'bob'")
    state.set_owner(rec.id, None)
    users.remove("bob")
    assert users.list() == []
