"""Progress rows and ended operations' log lines written together a moment late, in the real
SQLite database: the newest progress wins, an ended operation's final row is never
overwritten by an older progress, the lines are answered from memory until stored, and
closing writes what is pending."""

from __future__ import annotations

import threading
from pathlib import Path

from corral.domain.statuses import OperationStatus
from corral.services.writebehind import WriteBehind
from corral.state.database import Database
from corral.state.oplogstore import LogLine, OperationLogStore
from corral.state.store import StateStore


def _store(tmp_path: Path) -> StateStore:
    return StateStore(Database.open(tmp_path / "corral.db"))


def test_progress_rows_are_written_together_and_the_newest_wins(tmp_path: Path) -> None:
    store = _store(tmp_path)
    for op in ("a", "b"):
        store.insert_operation(op, "create", None)
    writer = WriteBehind(store, OperationLogStore(store.db), delay=3600)  # flushed by hand
    writer.progress("a", 0.1, "cloning")
    writer.progress("a", 0.5, "starting")
    writer.progress("b", 0.3, "cloned")
    assert store.get_operation("a").phase == "queued"  # not yet
    before = store.db.writes.transactions
    assert writer.flush()
    assert store.db.writes.transactions == before + 1  # both rows, one transaction
    a, b = store.get_operation("a"), store.get_operation("b")
    assert (a.progress, a.phase) == (0.5, "starting")
    assert (b.progress, b.phase) == (0.3, "cloned")
    writer.close()


def test_an_ended_operation_keeps_its_final_row(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.insert_operation("a", "start", None)
    writer = WriteBehind(store, OperationLogStore(store.db), delay=3600)
    writer.progress("a", 0.9, "starting")
    store.update_operation("a", status=OperationStatus.SUCCESS, progress=1.0, phase="done")
    writer.flush()  # the pending progress is older than the final row: not written
    final = store.get_operation("a")
    assert (final.status, final.progress, final.phase) == (OperationStatus.SUCCESS, 1.0, "done")
    writer.close()


def test_log_lines_are_stored_then_released_and_close_writes_what_is_pending(
        tmp_path: Path) -> None:
    store = _store(tmp_path)
    logs = OperationLogStore(store.db)
    writer = WriteBehind(store, logs, delay=3600)
    line = LogLine(0, 1.0, "info", "corral.operations", "create web1: started")
    released = threading.Event()
    writer.log_lines("a", [line], released.set)
    assert logs.lines("a") == [] and not released.is_set()
    writer.close()
    assert logs.lines("a") == [line] and released.is_set()
    # after the close: at once
    later = LogLine(0, 2.0, "info", "corral.operations", "late")
    writer.log_lines("b", [later], lambda: None)
    assert logs.lines("b") == [later]


def test_the_thread_writes_without_a_flush(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.insert_operation("a", "create", None)
    writer = WriteBehind(store, OperationLogStore(store.db), delay=0.01)
    done = threading.Event()
    writer.progress("a", 0.4, "cloned")
    writer.log_lines("a", [LogLine(0, 1.0, "info", "x", "y")], done.set)
    assert done.wait(30)  # released once the thread stored them (with the progress)
    assert store.get_operation("a").phase == "cloned"
    writer.close()
