"""The per-instance lock's refusals: who holds it, and a migration named as such."""

from __future__ import annotations

import pytest

from corral.domain.errors import Busy
from corral.services.locks import InstanceLocks


def test_a_second_holder_is_refused_with_the_first_ones_operation() -> None:
    locks = InstanceLocks()
    locks.acquire("vm1", "op-1", "snapshot")
    with pytest.raises(Busy, match=r"'vm1' is busy: operation op-1 \(snapshot\)"):
        locks.acquire("vm1", "op-2", "set")
    locks.release("vm1", "op-1")
    locks.acquire("vm1", "op-2", "set")


@pytest.mark.parametrize("action", ["migrate", "migrate-in"])
def test_a_change_during_a_migration_says_migrating(action: str) -> None:
    locks = InstanceLocks()
    locks.acquire("vm1", "op-1", action)
    with pytest.raises(Busy, match=r"'vm1' is migrating: operation op-1") as refused:
        locks.acquire("vm1", "set-x", "set")
    assert "corral operation wait op-1" in str(refused.value)
    assert locks.holder("vm1") == "op-1"
