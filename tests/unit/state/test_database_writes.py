"""Writes: this process's writers take turns in Python (no "database is locked" however many
there are), a transaction inside another on the same thread is a savepoint of it, and a
read of every row is kept until the next write."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from corral.domain.instance import Kind
from corral.domain.lifecycle import State
from corral.domain.resources import Resources
from corral.state.database import Database
from corral.state.store import StateStore


def _db(tmp_path: Path) -> Database:
    db = Database.open(tmp_path / "corral.db")
    with db.transaction() as conn:
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    return db


def _keys(db: Database) -> list[str]:
    return db.column("SELECT k FROM t ORDER BY k")


def test_an_inner_transaction_that_raises_is_undone_alone(tmp_path: Path) -> None:
    db = _db(tmp_path)
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES ('outer')")
        with pytest.raises(ValueError), db.transaction() as inner:
            inner.execute("INSERT INTO t VALUES ('inner')")
            raise ValueError("refused")
        with db.transaction() as inner:
            inner.execute("INSERT INTO t VALUES ('kept')")
    assert _keys(db) == ["kept", "outer"]


def test_an_outer_transaction_that_raises_takes_its_inner_ones_with_it(tmp_path: Path) -> None:
    db = _db(tmp_path)
    with pytest.raises(ValueError), db.transaction() as conn:
        with db.transaction() as inner:
            inner.execute("INSERT INTO t VALUES ('inner')")
        conn.execute("INSERT INTO t VALUES ('outer')")
        raise ValueError("refused")
    assert _keys(db) == []
    db.execute("INSERT INTO t VALUES ('after')")  # the thread writes again as usual
    assert _keys(db) == ["after"]


def test_a_writer_waits_for_the_one_writing_then_goes_on(tmp_path: Path) -> None:
    db = _db(tmp_path)
    holding, release, entered = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with db.transaction() as conn:
            conn.execute("INSERT INTO t VALUES ('first')")
            holding.set()
            release.wait(30)

    def second() -> None:
        with db.transaction() as conn:
            entered.set()
            conn.execute("INSERT INTO t VALUES ('second')")

    a = threading.Thread(target=first)
    a.start()
    assert holding.wait(30)
    b = threading.Thread(target=second)
    b.start()
    assert not entered.wait(0.2)  # it cannot be inside while the first holds the lock
    release.set()
    a.join(30)
    b.join(30)
    assert entered.is_set() and _keys(db) == ["first", "second"]


def test_many_concurrent_writers_all_succeed(tmp_path: Path) -> None:
    db = _db(tmp_path)

    def write(n: int) -> None:
        for i in range(10):
            with db.transaction() as conn:
                conn.execute("INSERT INTO t VALUES (?)", (f"{n}-{i}",))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write, range(32)))
    assert len(_keys(db)) == 320


def test_a_read_is_kept_until_a_write_ends(tmp_path: Path) -> None:
    db = _db(tmp_path)
    reads: list[int] = []

    def read() -> list[str]:
        reads.append(1)
        return _keys(db)

    assert db.unchanged_since("keys", read) == [] and len(reads) == 1
    assert db.unchanged_since("keys", read) == [] and len(reads) == 1  # no write since
    db.execute("INSERT INTO t VALUES ('a')")
    assert db.unchanged_since("keys", read) == ["a"] and len(reads) == 2
    with pytest.raises(ValueError), db.transaction() as conn:  # rolled back: read again too
        conn.execute("INSERT INTO t VALUES ('b')")
        raise ValueError("refused")
    assert db.unchanged_since("keys", read) == ["a"] and len(reads) == 3


def test_listed_instances_follow_every_write_and_are_the_callers_own(tmp_path: Path) -> None:
    store = StateStore(Database.open(tmp_path / "corral.db"))
    rec = store.insert_instance("a", Kind.CT, "tiny", Resources(), False, "node", 100)
    first = store.list_instances()
    assert [r.name for r in first] == ["a"]
    first.clear()  # the caller's list: the next answer is whole
    again = store.list_instances()
    assert [r.name for r in again] == ["a"] and again[0] is store.list_instances()[0]
    store.set_state(rec.id, State.RUNNING)
    assert store.list_instances()[0].state is State.RUNNING
    store.delete_instance(rec.id)
    assert store.list_instances() == []
