"""The daemon's one database: a SQLite file, its schema brought up to date once, and the one
way every store runs statements (plain SQL on the ``sqlite3`` module).

One ``Database`` per daemon, handed to every store. Alembic migrations (``migrations/``,
the schema's only description) run once, in ``Database.open``; after that SQLAlchemy is not
used. Why plain ``sqlite3`` and not SQLAlchemy Core for the statements: measured with
``bench/state_statements.py``, the statements of a start and a stop cost several times more
through SQLAlchemy when the daemon has been idle for a moment (the cost is the amount of
Python it runs, cold in the caches, not the query), and a start runs several of them on its
critical path.

Each thread gets its own connection (autocommit mode): reads run as they are, writes go
through ``transaction`` (``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception).
The daemon's threads take turns for the write lock in Python first (``Database._writer``):
SQLite's own busy handler makes a waiting writer sleep and poll (1, 2, 5 … 100 ms), so
under many concurrent writers a write waited far longer than the writes before it took,
and whatever it held meanwhile (the admission check's lock, on every create) queued every
request behind it (docs/perf-log.md, "POST /instances under load").

Values: a ``datetime`` is stored as text in SQLAlchemy's SQLite format (what every existing
database holds), JSON columns as JSON text, booleans as 0/1 -- ``to_sql_datetime`` and
``from_sql_datetime`` are the one date format.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

MIGRATIONS = Path(__file__).parent / "migrations"
DATABASE_FILE = "corral.db"
"""The database's name in a daemon's state directory."""

BUSY_TIMEOUT_S = 5.0
"""How long a write waits for another writer (this process's, then SQLite's lock)."""
Row = tuple[Any, ...]
R = TypeVar("R")

_DATETIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's SQLite DateTime format


def utcnow() -> datetime:
    """Now in UTC, naive (the stored form)."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_sql_datetime(value: datetime) -> str:
    return value.strftime(_DATETIME)


def from_sql_datetime(value: str) -> datetime:
    # fromisoformat (Python >= 3.11) reads the "%Y-%m-%d %H:%M:%S.%f" form ~10x faster than
    # strptime: every create read every retired id's time this way (LocalIds.retired_ids,
    # 4-7 % of corrald's Python time in a bulk create).
    return datetime.fromisoformat(value)


def optional_datetime(value: str | None) -> datetime | None:
    return None if value is None else from_sql_datetime(value)


@dataclass(frozen=True)
class Mapper(Generic[R]):
    """How the rows of one table become records and back: the table's only mapping.

    ``columns`` in the order ``load`` reads them and ``dump`` writes them."""

    table: str
    columns: tuple[str, ...]
    load: Callable[[Row], R]
    dump: Callable[[R], Sequence[object]]

    def load_all(self, rows: Sequence[Row]) -> list[R]:
        """``load`` of many rows; a row seen before (the same values) gives the record made
        then, so a ``list`` of a thousand unchanged rows builds no new objects (records are
        frozen). The memory holds the rows of the last few calls only."""
        memo: dict[Row, R] = self.__dict__.setdefault("_memo", {})
        if len(memo) > 2 * len(rows) + 256:
            memo.clear()
        found = []
        for row in rows:
            record = memo.get(row)
            if record is None:
                record = memo[row] = self.load(row)
            found.append(record)
        return found

    @functools.cached_property
    def select(self) -> str:
        return f"SELECT {', '.join(self.columns)} FROM {self.table}"

    @functools.cached_property
    def insert(self) -> str:
        return (f"INSERT INTO {self.table} ({', '.join(self.columns)}) "
                f"VALUES ({', '.join('?' * len(self.columns))})")


@dataclass
class WriteFigures:
    """This daemon's write transactions since it started (``/metrics``): how many, the time
    their threads waited for the write lock (``Database._writer``), and the time they held
    it. Nanoseconds; counted under the lock, so exact."""

    transactions: int = 0
    waited_ns: int = 0
    held_ns: int = 0


class Database:
    """Connections to one SQLite file whose schema is at the newest migration."""

    def __init__(self, path: Path) -> None:
        """Use ``Database.open`` (it migrates); this only connects."""
        self.path = path
        self._local = threading.local()
        self.generation = 0
        """Write transactions committed through this object (``unchanged_since``)."""
        self._answers: dict[str, tuple[int, Any]] = {}
        self._writer = threading.Lock()
        """Held by the thread in a write transaction: this process's writers wait here (woken
        as soon as it ends) instead of in SQLite's sleeping busy handler. Another process's
        writer (none in normal use) is still waited for by ``busy_timeout``."""
        self.writes = WriteFigures()

    @classmethod
    def open(cls, path: Path) -> Database:
        """Open (creating if needed) the SQLite file at ``path``, migrated to head."""
        path.parent.mkdir(parents=True, exist_ok=True)
        migrate(path)
        return cls(path)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: consistent after a crash
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            self._local.conn = conn  # closed when its thread ends (thread-local)
        return conn

    def one(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        row: Row | None = self._connection().execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return list(self._connection().execute(sql, params).fetchall())

    def column(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """The first column of every row."""
        return [row[0] for row in self._connection().execute(sql, params)]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on this thread's connection: committed when the block ends,
        rolled back if it raises. Inside another one on the same thread it is a savepoint of
        it (its changes undone alone if it raises, committed with the outer one): a caller
        may hold the write lock across a check and the store call that records its result
        (``CapacityService.admit``)."""
        conn = self._connection()
        depth: int = getattr(self._local, "depth", 0)
        if depth:
            yield from self._savepoint(conn, depth)
            return
        # a writer stuck longer than the busy timeout does not stop the others for ever: past
        # it they go on to SQLite's own waiting (and its "database is locked")
        asked = time.perf_counter_ns()
        mine = self._writer.acquire(timeout=BUSY_TIMEOUT_S)
        got = time.perf_counter_ns()
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._local.depth = 1
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._local.depth = 0
                self.generation += 1  # under the write lock; a rollback counts too (harmless)
                figures = self.writes
                figures.transactions += 1
                figures.waited_ns += got - asked
                figures.held_ns += time.perf_counter_ns() - got
        finally:
            if mine:
                self._writer.release()

    def _savepoint(self, conn: sqlite3.Connection, depth: int) -> Iterator[sqlite3.Connection]:
        name = f"nested_{depth}"
        conn.execute(f"SAVEPOINT {name}")
        self._local.depth = depth + 1
        try:
            yield conn
            conn.execute(f"RELEASE {name}")
        except BaseException:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
            raise
        finally:
            self._local.depth = depth

    def unchanged_since(self, key: str, read: Callable[[], R]) -> R:
        """``read()``'s answer, read again only once a write transaction has ended since it
        was read (``key`` names the read). For the reads of every row that each ``list``
        makes (instances, disks): the daemon is its database's only writer, and every write
        of its goes through ``transaction``. The answer is shared: callers must not change
        it."""
        generation = self.generation  # before the read: a write during it makes it stale
        seen = self._answers.get(key)
        if seen is not None and seen[0] == generation:
            answer: R = seen[1]
            return answer
        answer = read()
        self._answers[key] = (generation, answer)
        return answer

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        """One write statement in its own transaction; the number of rows it changed."""
        with self.transaction() as conn:
            return conn.execute(sql, params).rowcount

    def close(self) -> None:
        """Close this thread's connection (other threads' close as their threads end)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            del self._local.conn


_REVISION = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(.+)$", re.MULTILINE)


def head_revision(versions: Path = MIGRATIONS / "versions") -> str | None:
    """The one head of the migration scripts, read from their ``revision``/``down_revision``
    lines without Alembic; None when it is not plain (no scripts, several heads, a merge)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in versions.glob("*.py"):
        for key, value in _REVISION.findall(script.read_text()):
            value = value.strip()
            if value == "None":
                continue
            if not (value[:1] in "\"'" and value[-1:] == value[:1] and len(value) > 2):
                return None  # a tuple (a merge) or anything else: let Alembic decide
            (parents if key == "down_revision" else revisions).add(value[1:-1])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _current_revisions(conn: sqlite3.Connection) -> set[str]:
    try:
        return {row[0] for row in conn.execute("SELECT version_num FROM alembic_version")}
    except sqlite3.DatabaseError:
        return set()


def at_head(path: Path) -> bool:
    """Whether the file at ``path`` holds the newest schema (read with plain sqlite3; corrald
    migrates in a child process when not: ``daemon.main.migrate_apart``)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        current = _current_revisions(conn)
    head = head_revision()
    return head is not None and current == {head}


def migrate(path: Path) -> None:
    """Bring the schema of the file at ``path`` to the newest Alembic revision (creating it);
    the only use of SQLAlchemy. A file already at the head is only looked at (plain sqlite3):
    Alembic and SQLAlchemy are imported only when a migration is pending (~39 MiB of the
    daemon's memory otherwise)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")  # kept in the file
        current = _current_revisions(conn)
    head = head_revision()
    if head is not None and current == {head}:
        return
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, event

    engine = create_engine(f"sqlite:///{path}")
    event.listen(engine, "connect", _migration_pragmas)
    try:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def _migration_pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    dbapi_conn.execute("PRAGMA foreign_keys=ON")
    dbapi_conn.execute("PRAGMA busy_timeout=5000")
