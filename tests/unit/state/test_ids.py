"""Instance ids in a real database with an injected clock: a deleted id is retired with the
time it left and stays out of use until the quarantine has passed."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from corral.domain.instance import Kind
from corral.domain.names import FIRST_ID
from corral.domain.resources import Resources
from corral.state.database import Database
from corral.state.store import StateStore


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 6, 12, 0)

    def __call__(self) -> datetime:
        return self.now


def _create(store: StateStore, name: str) -> int:
    return store.insert_instance(name, Kind.CT, "tiny", Resources(), False, "n1",
                                 FIRST_ID).id


def test_a_deleted_id_comes_back_only_after_the_quarantine(tmp_path: Path) -> None:
    clock = Clock()
    store = StateStore(Database.open(tmp_path / "corral.db"), clock=clock)
    store.id_quarantine = lambda: timedelta(days=30)
    assert [_create(store, n) for n in ("a", "b")] == [101, 102]
    store.delete_instance(101)
    clock.now += timedelta(days=29)
    assert _create(store, "c") == 103  # 101 is in quarantine
    store.delete_instance(102)
    clock.now += timedelta(days=2)  # 101's quarantine is over, 102's is not
    assert _create(store, "d") == 101
    assert _create(store, "e") == 104
    clock.now += timedelta(days=30)
    assert _create(store, "f") == 102


def test_quarantine_forever_means_ids_only_grow(tmp_path: Path) -> None:
    clock = Clock()
    store = StateStore(Database.open(tmp_path / "corral.db"), clock=clock)
    store.id_quarantine = lambda: None
    assert _create(store, "a") == 101
    store.delete_instance(101)
    clock.now += timedelta(days=10000)
    assert _create(store, "b") == 102
    store.delete_instance(102)
    assert _create(store, "c") == 103
