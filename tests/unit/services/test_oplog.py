"""Each operation's own log: what its work logged and its phases, kept in the real SQLite
database when it ends, bounded, and nothing of other work."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.domain.errors import InvalidInput
from corral.services import oplog
from corral.services.core import Corral, Settings
from corral.services.operations import OperationContext
from tests.integration.conftest import wait_until, write_fake_template

log = logging.getLogger("corral.test-oplog")


@pytest.fixture
def corral(tmp_path: Path) -> Iterator[Corral]:
    write_fake_template(tmp_path / "templates")
    app = Corral(Settings(state_dir=tmp_path, driver_mode="fake", node="n1",
                          history_interval=0))
    app.start()
    corral_log = logging.getLogger("corral")
    level = corral_log.level
    corral_log.setLevel(logging.INFO)  # what corrald's logs.setup makes of any --log-level
    try:
        yield app
    finally:
        corral_log.setLevel(level)
        app.close()


def test_an_operation_keeps_its_lines_and_phases(corral: Corral) -> None:
    log.info("before any operation: in no operation's log")

    def work(ctx: OperationContext) -> None:
        ctx.progress(0.1, "copying")
        ctx.progress(0.2, "copying")  # the same phase again: one line
        log.warning("disk %s is slow", "root")
        ctx.progress(0.9, "finishing")
        raise InvalidInput("out of space")

    op = corral.operations.submit("copy", "web1", work)
    assert corral.operations.wait(op.id, 10).status == "failure"
    lines = corral.operations.oplog.lines(op.id)
    assert [(ln.level, ln.message) for ln in lines] == [
        ("info", "copy web1: started"), ("info", "copying"),
        ("warning", "disk root is slow"), ("info", "finishing"),
        ("warning", "copy web1: failure: out of space"),
    ]
    assert [ln.seq for ln in lines] == list(range(5))
    # written to the database just after the waiters are answered (off their path)
    assert wait_until(lambda: corral.operations.oplog.store.lines(op.id) == lines, 10)


def test_concurrent_operations_keep_apart_and_a_crash_keeps_its_traceback(
        corral: Corral) -> None:
    both = threading.Barrier(2, timeout=10)

    def work(name: str) -> None:
        both.wait()
        log.info("working on %s", name)
        if name == "b":
            raise RuntimeError("a bug")

    first = corral.operations.submit("a", "ct-a", lambda ctx: work("a"))
    second = corral.operations.submit("b", "ct-b", lambda ctx: work("b"))
    corral.operations.wait(first.id, 10)
    corral.operations.wait(second.id, 10)
    a = [ln.message for ln in corral.operations.oplog.lines(first.id)]
    b = [ln.message for ln in corral.operations.oplog.lines(second.id)]
    assert a == ["a ct-a: started", "working on a", "a ct-a: succeeded"]
    assert b[:2] == ["b ct-b: started", "working on b"]
    assert any("Traceback" in m and "RuntimeError: a bug" in m for m in b)


def test_the_lines_are_bounded(corral: Corral, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oplog, "MAX_LINES", 5)

    def chatty(ctx: OperationContext) -> None:
        log.info("long %s", "x" * (oplog.MAX_CHARS + 100))
        for i in range(20):
            log.info("line %d", i)

    op = corral.operations.submit("chatty", None, chatty)
    corral.operations.wait(op.id, 10)
    store = corral.operations.oplog.store
    assert wait_until(lambda: len(store.lines(op.id)) == 6, 10)  # the note: when stored
    lines = store.lines(op.id)
    # started, long, line 0..2 kept; lines 3..19 and "succeeded" not
    assert lines[-1].message == "18 more lines were not kept (at most 5)"
    assert lines[1].message.endswith("x … (105 more chars)")
    assert len(lines[1].message) < oplog.MAX_CHARS + 30


def test_old_lines_are_pruned(corral: Corral) -> None:
    op = corral.operations.submit("quick", None, lambda ctx: None)
    corral.operations.wait(op.id, 10)
    store = corral.operations.oplog.store
    assert wait_until(lambda: len(store.lines(op.id)) == 2, 10)
    newest = max(ln.time for ln in store.lines(op.id))
    assert store.prune(newest - 1) == 0
    assert store.prune(newest + 1) == 2 and store.lines(op.id) == []
