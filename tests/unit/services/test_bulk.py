"""BulkService with a real SQLite store: items through an ItemRunner, children recorded,
cancel passed on to running items and skipping the rest."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from corral.domain.bulk import BulkAction, ItemOutcome, ItemStatus
from corral.domain.errors import InvalidInput
from corral.services.bulk import BulkRequest, BulkService, Done, Item
from corral.services.core import Corral, Settings
from corral.services.operations import OperationContext
from corral.state.store import OperationRecord
from tests.integration.conftest import write_fake_template


@pytest.fixture
def corral(tmp_path: Path) -> Corral:
    write_fake_template(tmp_path / "templates")
    app = Corral(Settings(state_dir=tmp_path, driver_mode="fake", node="n1"))
    app.start()
    return app


class Elsewhere:
    """An ItemRunner whose items run somewhere else (as a cluster runner's would): it only
    reports outcomes, the bulk service records them on the children."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def run(self, request: BulkRequest, item: Item, parent: str) -> Done:
        self.seen.append((item.name, parent))
        if item.name == "bad":
            return Done(ItemOutcome(item.name, ItemStatus.FAILED, "refused over there"))
        return Done(ItemOutcome(item.name, ItemStatus.OK, f"done on m2: {item.name}"))


def test_outcomes_of_another_runner_become_the_children(corral: Corral) -> None:
    for name in ("a", "bad", "c"):
        corral.operations.wait(corral.instances.create(name, "ct", "tiny", {}).id, 10)
    runner = Elsewhere()
    service = BulkService(corral.store, corral.operations, runner)
    parent = service.submit(BulkRequest(BulkAction.STOP, names=("a", "bad", "c", "zz")))
    done = corral.operations.wait(parent.id, 10)
    assert (done.status, done.error) == ("failure", "2 ok, 2 failed of 4")
    assert sorted(runner.seen) == [("a", parent.id), ("bad", parent.id), ("c", parent.id)]
    children = service.children(parent.id)
    assert [(c.instance, c.status, c.phase, c.error) for c in children] == [
        ("a", "success", "done on m2: a", None), ("bad", "failure", "failure",
                                                  "refused over there"),
        ("c", "success", "done on m2: c", None), ("zz", "failure", "failure",
                                                  "no instance 'zz'")]


def test_requests_refused_before_anything_is_recorded(corral: Corral) -> None:
    before = len(corral.store.list_operations(children=True))
    for request, says in [
        (BulkRequest(BulkAction.START), "name at least one"),
        (BulkRequest(BulkAction.START, names=("a",), selector="x=y"), "not both"),
        (BulkRequest(BulkAction.START, selector="x=y"), "no instance matches"),
        (BulkRequest(BulkAction.EXEC, names=("a",)), "needs a command"),
        (BulkRequest(BulkAction.START, names=("a",), parallel=0), "--parallel"),
        (BulkRequest(BulkAction.CREATE, names=("Bad",)), "type and a template"),
    ]:
        with pytest.raises(InvalidInput, match=says):
            corral.bulk.submit(request)
    assert len(corral.store.list_operations(children=True)) == before


def test_cancel_stops_running_items_and_skips_the_rest(corral: Corral) -> None:
    for i in range(5):
        made = corral.instances.create(f"n{i}", "ct", "tiny", {})
        corral.operations.wait(made.id, 10)
    running = threading.Semaphore(0)

    class Slow:
        """Each item an operation of this host that runs until it is cancelled."""

        def run(self, request: BulkRequest, item: Item, parent: str) -> Done:
            def work(ctx: OperationContext) -> None:
                running.release()
                while True:
                    ctx.progress(0.5, "working")  # raises Cancelled once asked
                    threading.Event().wait(0.01)

            def submit() -> OperationRecord:
                return corral.operations.submit("slow", item.name, work)

            final = corral.operations.run_item(parent, item.child, submit)
            failed = ItemOutcome(item.name, ItemStatus.FAILED, final.error or "")
            return Done(failed, recorded=True)

    service = BulkService(corral.store, corral.operations, Slow())
    parent = service.submit(BulkRequest(BulkAction.START, names=tuple(f"n{i}" for i in
                                                                       range(5)), parallel=2))
    assert running.acquire(timeout=10) and running.acquire(timeout=10)
    corral.operations.cancel(parent.id)
    done = corral.operations.wait(parent.id, 10)
    assert done.status == "cancelled"
    children = service.children(parent.id)
    assert [c.status for c in children] == ["cancelled", "cancelled", "skipped", "skipped",
                                            "skipped"]
    assert {c.phase for c in children[2:]} == {"skipped: the bulk operation was cancelled"}
    assert all(corral.locks.holder(f"n{i}") is None for i in range(5))
