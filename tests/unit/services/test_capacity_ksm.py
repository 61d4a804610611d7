"""The host policy's KSM switch: the kernel is switched first, so a refusal changes
nothing; a bad value is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.domain.errors import InvalidInput, Unsupported
from corral.services.capacity import CapacityService, Policy
from corral.state.database import Database
from corral.state.store import StateStore
from tests.unit.host.test_ksm import fake_ksm


def service(tmp_path: Path, ksm_root: Path) -> CapacityService:
    store = StateStore(Database.open(tmp_path / "corral.db"))
    return CapacityService(store, tmp_path, tmp_path / "policy.json", ksm_root=ksm_root)


def test_ksm_on_and_off(tmp_path: Path) -> None:
    root = fake_ksm(tmp_path / "ksm")
    capacity = service(tmp_path, root)
    assert capacity.policy().ksm is False  # off until the operator turns it on
    assert capacity.set_policy({"ksm": "on"}).ksm is True
    assert (root / "run").read_text() == "1" and capacity.policy().ksm is True
    (root / "run").write_text("0")  # e.g. a host reboot
    capacity.apply_ksm()  # what the daemon does at start
    assert (root / "run").read_text() == "1"
    assert capacity.set_policy({"ksm": "off"}).ksm is False
    assert (root / "run").read_text() == "0"


def test_refusals_change_nothing(tmp_path: Path) -> None:
    capacity = service(tmp_path, tmp_path / "no-ksm")
    with pytest.raises(Unsupported, match="no KSM"):
        capacity.set_policy({"ksm": "on", "cpu": "2"})
    assert capacity.policy() == Policy()
    with pytest.raises(InvalidInput, match="not on or off"):
        capacity.set_policy({"ksm": "maybe"})
    capacity.apply_ksm()  # off: nothing to do, no error


def test_vm_launch_priority(tmp_path: Path) -> None:
    """The VM launch priority is a host policy the operator changes; 1 to 256."""
    capacity = service(tmp_path, tmp_path / "no-ksm")
    assert capacity.policy().vm_launch_priority == Policy().vm_launch_priority
    assert capacity.set_policy({"vm_launch_priority": "16"}).vm_launch_priority == 16
    assert capacity.policy().vm_launch_priority == 16  # persisted
    for bad in ("0", "257", "2.5", "high"):
        with pytest.raises(InvalidInput, match="vm_launch_priority"):
            capacity.set_policy({"vm_launch_priority": bad})
    assert capacity.set_policy({"vm_launch_priority": "1"}).vm_launch_priority == 1
