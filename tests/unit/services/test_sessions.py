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


@pytest.fixture
def db(tmp_path: Path) -> Database:
    found = Database.open(tmp_path / "corral.db")
    users = UserStore(found)
    for name in ("alice", "bob"):
        users.add(name, Role.OPERATOR, f"hash-of-{name}")
    return found


def test_a_session_lives_while_used_and_ends_when_idle(db: Database) -> None:
    clock = Clock()
    store = SessionStore(db, idle=60, lifetime=600, clock=clock)
    secret, session = store.open("alice")
    assert store.find(secret) == session
    clock.now += 59
    assert store.find(secret) is not None  # each use restarts the idle time
    clock.now += 59
    assert store.find(secret) is not None
    clock.now += 60
    assert store.find(secret) is None
    assert store.find(secret) is None and len(store) == 0


def test_a_session_ends_after_its_lifetime_however_used(db: Database) -> None:
    clock = Clock()
    store = SessionStore(db, idle=60, lifetime=100, clock=clock)
    secret, _ = store.open("alice")
    for _ in range(3):
        clock.now += 30
        assert store.find(secret) is not None
    clock.now += 10
    assert store.find(secret) is None


def test_logout_and_per_user_close_and_secrets_not_kept(db: Database) -> None:
    store = SessionStore(db)
    one, session = store.open("alice")
    two, _ = store.open("alice")
    three, _ = store.open("bob")
    assert one != two and session.csrf not in (one, two)
    store.close(one)
    assert store.find(one) is None and store.find(two) is not None
    assert store.close_user("alice") == 1
    assert store.find(two) is None and store.find(three) is not None
    kept = db.all("SELECT * FROM web_sessions")
    assert kept and not any(two in str(v) or three in str(v) for r in kept for v in r)


def test_csrf_token_comparison(db: Database) -> None:
    _, session = SessionStore(db).open("alice")
    assert session.csrf_ok(session.csrf)
    assert not session.csrf_ok(None) and not session.csrf_ok("")
    assert not session.csrf_ok(session.csrf[:-1] + "x")


def test_sessions_outlive_the_store_and_expired_ones_are_swept(db: Database) -> None:
    clock = Clock()
    clock.now = 1_000_000.0
    first = SessionStore(db, idle=60, lifetime=600, clock=clock)
    secret, session = first.open("alice")
    stale, _ = first.open("bob")
    clock.now += 30
    again = SessionStore(Database(db.path), idle=60, lifetime=600, clock=clock)  # a restart
    found = again.find(secret)
    assert found is not None and (found.user, found.csrf) == ("alice", session.csrf)
    clock.now += 45  # bob's idle time is over; alice's use 45 s ago restarted hers
    assert again.find(secret) is not None
    again.open("alice")  # a login sweeps the expired
    assert len(again) == 2 and again.find(stale) is None


def test_a_use_writes_its_time_only_when_it_is_old(db: Database) -> None:
    clock = Clock()
    store = SessionStore(db, idle=100, lifetime=1000, clock=clock)
    secret, _ = store.open("alice")
    assert store.touch_every == 10
    clock.now = 5
    assert store.find(secret) is not None
    assert db.column("SELECT seen FROM web_sessions") == [0.0]
    clock.now = 12
    assert store.find(secret) is not None
    assert db.column("SELECT seen FROM web_sessions") == [12.0]


def test_removing_a_user_drops_its_sessions_rows(db: Database) -> None:
    store = SessionStore(db)
    secret, _ = store.open("bob")
    UserStore(db).remove("bob")
    assert store.find(secret) is None and len(store) == 0


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
