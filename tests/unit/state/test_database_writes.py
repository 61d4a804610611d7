"""Writes: this process's writers take turns in Python (no "database is locked" however many
there are), and a transaction inside another on the same thread is a savepoint of it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from corral.state.database import Database


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
