"""The few statements on every start and stop, in plain SQL on the sqlite3 module.

Why not SQLAlchemy here: measured on this host, one small SELECT through SQLAlchemy (ORM or
Core alike) costs ~0.1 ms in a hot loop but ~0.8 ms when the daemon has been idle for a
fraction of a second -- the cost is the amount of Python code and data it touches, which
sits cold in the caches after an idle period, not the query. The same SELECT through the
sqlite3 module costs ~0.1 ms cold. A start runs four or five such statements on its
critical path, so they live here: one place, the same tables and the same value formats
as the SQLAlchemy models (``models.py``) and migrations, which stay the schema's source.
Everything else keeps using SQLAlchemy.

Each thread gets its own connection (sqlite3 connections are not shared between threads
here); writes are explicit ``BEGIN IMMEDIATE`` … ``COMMIT`` transactions.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

Row = tuple[Any, ...]
Statement = tuple[str, Sequence[object]]

# SQLAlchemy's SQLite DateTime storage format (always with microseconds)
_DATETIME = "%Y-%m-%d %H:%M:%S.%f"


def to_sql_datetime(value: datetime) -> str:
    return value.strftime(_DATETIME)


def from_sql_datetime(value: str) -> datetime:
    return datetime.strptime(value, _DATETIME) if "." in value else datetime.fromisoformat(value)


class HotPath:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # autocommit mode: transactions only where ``write`` opens one
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            self._local.conn = conn
        return conn

    def one(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        row: Row | None = self._connection().execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return list(self._connection().execute(sql, params).fetchall())

    def write(self, first: Statement, *more: Statement) -> Row | None:
        """Run the statements in one transaction; the first statement's first row (for a
        ``RETURNING``)."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            cursor = conn.execute(*first)
            row: Row | None = cursor.fetchone()
            cursor.fetchall()  # a RETURNING statement completes only once read to its end
            for statement in more:
                conn.execute(*statement)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return row
