"""The admission check holds the database's write lock while the create records itself: of
many concurrent creates only those that fit are recorded."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from corral.domain.instance import Kind
from corral.domain.resources import Resources
from corral.services.capacity import Amounts, CapacityService, OverCommitted
from corral.state.database import Database
from corral.state.store import StateStore

GiB = 1024**3


def test_of_many_concurrent_creates_only_those_that_fit_are_recorded(tmp_path: Path) -> None:
    store = StateStore(Database.open(tmp_path / "corral.db"))
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"cpu": None, "memory": 1.0, "disk": None}))
    capacity = CapacityService(store, tmp_path, policy,
                               physical=lambda: Amounts(cpu=2, memory=3 * GiB, disk=100 * GiB))
    each = Resources(memory=GiB)

    def create(n: int) -> bool:
        try:
            with capacity.admit(each, None):
                store.insert_instance(f"c{n}", Kind.CT, "tiny", each, False, "node", 100)
        except OverCommitted:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        admitted = list(pool.map(create, range(8)))
    assert admitted.count(True) == 3
    assert len(store.list_instances()) == 3
    assert store.allocated()[1] == 3 * GiB
