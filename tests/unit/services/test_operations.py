"""Operations, locks and undo, with a real SQLite store and the fake driver."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from corral.domain.errors import Busy
from corral.services.core import Corral, Settings
from corral.services.operations import OperationContext, Work
from corral.state.store import OperationRecord
from tests.integration.conftest import write_fake_template


@pytest.fixture
def corral(tmp_path: Path) -> Corral:
    write_fake_template(tmp_path / "templates")
    app = Corral(Settings(state_dir=tmp_path, driver_mode="fake", node="n1"))
    app.start()
    return app


def test_second_operation_on_a_busy_instance_is_refused(corral: Corral) -> None:
    release = threading.Event()
    started = threading.Event()

    def slow(ctx: OperationContext) -> None:
        started.set()
        release.wait(10)

    op = corral.operations.submit("slow", "web1", slow)
    started.wait(5)
    with pytest.raises(Busy, match=f"operation {op.id}"):
        corral.operations.submit("other", "web1", lambda ctx: None)
    release.set()
    assert corral.operations.wait(op.id, 10).status == "success"
    after = corral.operations.submit("other", "web1", lambda ctx: None)
    assert corral.operations.wait(after.id, 10).status == "success"


def test_lifecycle_refused_while_create_runs(corral: Corral) -> None:
    release = threading.Event()
    started = threading.Event()

    def slow(ctx: OperationContext) -> None:
        started.set()
        release.wait(10)

    corral.operations.submit("slow", "a1", slow)
    started.wait(5)
    with pytest.raises(Busy):
        corral.operations.submit("start", "a1", lambda ctx: None)
    release.set()


def test_failed_create_leaves_nothing(corral: Corral) -> None:
    corral.capacity.set_policy({"disk": "none"})  # let storage be the one to refuse
    op = corral.instances.create("huge", "ct", "tiny", {"disk": "100T"})
    done = corral.operations.wait(op.id, 10)
    assert done.status == "failure"
    assert "100T" in (done.error or "") and "pool 'default'" in (done.error or "")
    assert corral.store.list_instances() == []
    assert not (corral.settings.state_dir / "instances" / "101").exists()


def test_cancel_stops_at_next_step(corral: Corral) -> None:
    started = threading.Event()
    proceed = threading.Event()

    def steps(ctx: OperationContext) -> None:
        started.set()
        proceed.wait(10)
        ctx.progress(0.5, "second step")

    op = corral.operations.submit("steps", None, steps)
    started.wait(5)
    corral.operations.cancel(op.id)
    proceed.set()
    assert corral.operations.wait(op.id, 10).status == "cancelled"


def test_orphaned_operations_fail_on_restart(tmp_path: Path) -> None:
    write_fake_template(tmp_path / "templates")
    first = Corral(Settings(state_dir=tmp_path, driver_mode="fake"))
    first.store.insert_operation("abc", "create", "x")
    second = Corral(Settings(state_dir=tmp_path, driver_mode="fake"))
    second.start()
    record = second.store.get_operation("abc")
    assert record.status == "failure" and "corrald stopped" in (record.error or "")


def test_half_created_instance_removed_on_restart(tmp_path: Path) -> None:
    write_fake_template(tmp_path / "templates")
    first = Corral(Settings(state_dir=tmp_path, driver_mode="fake"))
    from corral.domain.instance import Kind
    from corral.domain.resources import Resources

    rec = first.store.insert_instance("half", Kind.CT, "tiny", Resources(), False, "n", 101)
    (tmp_path / "instances" / str(rec.id)).mkdir(parents=True)
    second = Corral(Settings(state_dir=tmp_path, driver_mode="fake"))
    second.start()
    assert second.store.list_instances() == []
    assert not (tmp_path / "instances" / str(rec.id)).exists()


def test_execute_records_then_runs_the_work_on_the_same_thread(corral: Corral) -> None:
    """The API's lifecycle path: the record is reported as soon as it is committed, the work
    then runs on the thread that submitted it (no second hand-off)."""
    reported: list[object] = []
    threads: dict[str, int] = {}
    accepted = threading.Event()

    def submit() -> OperationRecord:
        threads["submit"] = threading.get_ident()
        return corral.operations.submit("job", "x1", work)

    def work(ctx: OperationContext) -> None:
        threads["work"] = threading.get_ident()
        assert accepted.wait(5), "the record was not reported before the work ran"

    def on_accepted(result: OperationRecord | BaseException) -> None:
        reported.append(result)
        accepted.set()

    corral.operations.execute(submit, on_accepted)
    assert accepted.wait(5)
    record = reported[0]
    assert isinstance(record, OperationRecord) and record.status == "running"
    assert corral.operations.wait(record.id, 10).status == "success"
    assert threads["submit"] == threads["work"] != threading.get_ident()


def _held_until(release: threading.Event) -> Work:
    def work(ctx: OperationContext) -> None:
        release.wait(10)

    return work


def test_execute_reports_a_refused_submit_and_runs_nothing(corral: Corral) -> None:
    release = threading.Event()
    holder = corral.operations.submit("slow", "x2", _held_until(release))
    reported: list[OperationRecord | BaseException] = []
    done = threading.Event()
    ran: list[str] = []

    def refused() -> OperationRecord:
        return corral.operations.submit("other", "x2", lambda ctx: ran.append("ran"))

    def on_accepted(result: OperationRecord | BaseException) -> None:
        reported.append(result)
        done.set()

    corral.operations.execute(refused, on_accepted)
    assert done.wait(5)
    assert isinstance(reported[0], Busy) and ran == []
    release.set()
    assert corral.operations.wait(holder.id, 10).status == "success"


def test_on_end_hands_over_the_final_record_once(corral: Corral) -> None:
    release = threading.Event()
    op = corral.operations.submit("slow", "x3", _held_until(release))
    ended: list[OperationRecord] = []
    corral.operations.on_end(op.id, ended.append)  # still running: called when it ends
    assert ended == []
    release.set()
    assert corral.operations.wait(op.id, 10).status == "success"
    assert [r.status for r in ended] == ["success"]
    late: list[OperationRecord] = []
    corral.operations.on_end(op.id, late.append)  # already ended: called at once
    assert [r.id for r in late] == [op.id] and late[0].status == "success"


def test_execute_at_end_reports_once_with_the_final_record(corral: Corral) -> None:
    release = threading.Event()
    reported: list[OperationRecord | BaseException] = []
    done = threading.Event()

    def on_result(result: OperationRecord | BaseException) -> None:
        reported.append(result)
        done.set()

    submission = corral.operations.execute(
        lambda: corral.operations.submit("slow", "x4", _held_until(release)), on_result,
        at_end=True)
    assert not done.wait(0.3)  # running: nothing reported yet, but the record is visible
    assert submission.record is not None and submission.record.status == "running"
    release.set()
    assert done.wait(5)
    assert len(reported) == 1
    final = reported[0]
    assert isinstance(final, OperationRecord) and final.id == submission.record.id
    assert final.status == "success"
