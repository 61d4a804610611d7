"""Labels, bulk children and the allocation sum in a real (migrated) SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.domain.errors import InvalidInput
from corral.domain.instance import Kind
from corral.domain.labels import check_labels
from corral.domain.resources import Resources
from corral.domain.statuses import OperationStatus
from corral.state.database import Database
from corral.state.store import StateStore


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(Database.open(tmp_path / "corral.db"))


def test_labels_change_atomically_and_go_with_the_instance(store: StateStore) -> None:
    a = store.insert_instance("a", Kind.CT, "tiny", Resources(1, 1 << 20, 1 << 20), False, "n",
                              101)
    assert store.change_labels(a.id, {"role": "web", "tier": "1"}, [], check_labels) == {
        "role": "web", "tier": "1"}
    assert store.change_labels(a.id, {"role": "db"}, ["tier"], check_labels) == {"role": "db"}

    def refuse(_labels: dict[str, str]) -> None:
        raise InvalidInput("no")

    with pytest.raises(InvalidInput):
        store.change_labels(a.id, {"x": "1"}, ["role"], refuse)
    assert store.labels(a.id) == {"role": "db"}  # nothing of the refused change
    assert store.all_labels() == {a.id: {"role": "db"}}
    store.delete_instance(a.id)
    assert store.all_labels() == {}  # ON DELETE CASCADE


def test_allocated_is_the_sum_of_every_instance(store: StateStore) -> None:
    assert store.allocated() == (0, 0, 0)
    store.insert_instance("a", Kind.CT, "tiny", Resources(2, 100, 1000), False, "n", 101)
    store.insert_instance("b", Kind.VM, "tiny", Resources(3, 50, 7), False, "n", 101)
    assert store.allocated() == (5, 150, 1007)


def test_children_are_listed_apart_and_in_order(store: StateStore) -> None:
    parent = store.insert_operation("p" * 8, "bulk-start", None)
    store.insert_children(parent.id, [("c2", "start", "b"), ("c1", "start", "a")])
    assert [c.id for c in store.children(parent.id)] == ["c2", "c1"]
    assert {c.status for c in store.children(parent.id)} == {OperationStatus.PENDING}
    # a pending child becomes running in place, under its id
    running = store.insert_operation("c1", "start", "a", parent=parent.id)
    assert running.status is OperationStatus.RUNNING and running.parent == parent.id
    assert [o.id for o in store.list_operations()] == [parent.id]
    assert {o.id for o in store.list_operations(children=True)} == {parent.id, "c1", "c2"}
