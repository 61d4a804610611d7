"""Placement groups of a single host in a real (migrated) SQLite database."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from corral.domain.errors import Conflict, NotFound
from corral.domain.groups import GroupRefused, Rule
from corral.domain.instance import Kind
from corral.domain.resources import Resources
from corral.state.database import Database
from corral.state.groupstore import GroupStore
from corral.state.store import StateStore


@pytest.fixture
def stores(tmp_path: Path) -> tuple[StateStore, GroupStore]:
    db = Database.open(tmp_path / "corral.db")
    return StateStore(db), GroupStore(db)


def test_group_lifecycle(stores: tuple[StateStore, GroupStore]) -> None:
    state, groups = stores
    groups.create("db", Rule.ANTI_AFFINITY)
    with pytest.raises(Conflict, match="already exists"):
        groups.create("db", Rule.AFFINITY)
    groups.join("db", "db1", "n")
    with pytest.raises(GroupRefused, match="anti-affinity: member 'n' already holds db1"):
        groups.join("db", "db2", "n")
    state.insert_instance("db1", Kind.CT, "tiny", Resources(1, 1 << 20, 1 << 20), False,
                          "n", 101)
    assert groups.get("db").members == {"db1": "n"}
    assert groups.group_of("db1") is not None and groups.group_of("nope") is None
    with pytest.raises(Conflict, match="still holds db1"):
        groups.delete("db")
    groups.leave("db1")
    groups.delete("db")
    with pytest.raises(NotFound, match="no placement group 'db'"):
        groups.get("db")
    assert groups.list() == []


def test_concurrent_joins_into_anti_affinity_take_one_member_once(
        stores: tuple[StateStore, GroupStore]) -> None:
    _state, groups = stores
    groups.create("db", Rule.ANTI_AFFINITY)
    won: list[str] = []
    barrier = threading.Barrier(8)

    def join(i: int) -> None:
        barrier.wait()
        try:
            groups.join("db", f"db{i}", "n")
            won.append(f"db{i}")
        except GroupRefused:
            pass

    threads = [threading.Thread(target=join, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and groups.get("db").members == {won[0]: "n"}
