"""Console sessions (services/sessions.py) and passwords (services/users.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.domain.errors import InvalidInput, NotFound
from corral.domain.users import Role
from corral.services.sessions import SessionStore
from corral.services.users import UserService
from corral.state.database import Database
from corral.state.userstore import UserStore


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_session_lives_while_used_and_ends_when_idle() -> None:
    clock = Clock()
    store = SessionStore(idle=60, lifetime=600, clock=clock)
    secret, session = store.open("alice")
    assert store.find(secret) == session
    clock.now += 59
    assert store.find(secret) is not None  # each use restarts the idle time
    clock.now += 59
    assert store.find(secret) is not None
    clock.now += 60
    assert store.find(secret) is None
    assert store.find(secret) is None and len(store) == 0


def test_a_session_ends_after_its_lifetime_however_used() -> None:
    clock = Clock()
    store = SessionStore(idle=60, lifetime=100, clock=clock)
    secret, _ = store.open("alice")
    for _ in range(3):
        clock.now += 30
        assert store.find(secret) is not None
    clock.now += 10
    assert store.find(secret) is None


def test_logout_and_per_user_close_and_secrets_not_kept() -> None:
    store = SessionStore()
    one, session = store.open("alice")
    two, _ = store.open("alice")
    three, _ = store.open("bob")
    assert one != two and session.csrf not in (one, two)
    store.close(one)
    assert store.find(one) is None and store.find(two) is not None
    assert store.close_user("alice") == 1
    assert store.find(two) is None and store.find(three) is not None
    assert one not in repr(store._sessions)  # only hashes of the secrets are kept


def test_csrf_token_comparison() -> None:
    _, session = SessionStore().open("alice")
    assert session.csrf_ok(session.csrf)
    assert not session.csrf_ok(None) and not session.csrf_ok("")
    assert not session.csrf_ok(session.csrf[:-1] + "x")


def test_passwords_are_argon2id_hashes_and_a_change_ends_sessions(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "corral.db")
    users = UserService(UserStore(db))
    users.add("alice", "operator")
    assert users.check_password("alice", "whatever1") is None  # no password yet
    users.set_password("alice", "correct horse")
    stored = db.column("SELECT password_hash FROM users")[0]
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    who = users.check_password("alice", "correct horse")
    assert who is not None and who.role is Role.OPERATOR
    assert users.check_password("alice", "wrong horse") is None
    assert users.check_password("nobody", "correct horse") is None
    secret, _ = users.sessions.open("alice")
    users.set_password("alice", "battery staple")
    assert users.sessions.find(secret) is None
    with pytest.raises(InvalidInput, match="at least 8 characters"):
        users.set_password("alice", "short")
    with pytest.raises(NotFound):
        users.set_password("nobody", "long enough")
    secret, _ = users.sessions.open("alice")
    users.remove("alice")
    assert users.sessions.find(secret) is None and users.caller("alice") is None
