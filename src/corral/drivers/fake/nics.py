"""NIC hot-plug of the fake driver (its ``Hooks.nics``): accepted as data, the indexes of the
attached NICs recorded beside the state file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from corral.domain.errors import Conflict
from corral.domain.instance import InstanceSpec
from corral.domain.network import NicSpec
from corral.drivers.base import RuntimeState

if TYPE_CHECKING:
    from corral.drivers.fake.driver import FakeDriver


def nics_path(spec: InstanceSpec) -> Path:
    return spec.directory / "fake-nics.json"


def attached_nics(spec: InstanceSpec) -> list[int]:
    """Indexes of the NICs hot-added to the running instance."""
    try:
        found: list[int] = json.loads(nics_path(spec).read_text())
        return found
    except FileNotFoundError:
        return []


class FakeNics:
    def __init__(self, driver: FakeDriver) -> None:
        self.driver = driver

    def attach_nic(self, spec: InstanceSpec, nic: NicSpec) -> None:
        state = self.driver.status(spec).state
        if state not in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
            raise Conflict(f"{spec.name} is {state.value}")
        attached = sorted({*attached_nics(spec), nic.index})
        nics_path(spec).write_text(json.dumps(attached))

    def detach_nic(self, spec: InstanceSpec, nic: NicSpec) -> None:
        attached = [i for i in attached_nics(spec) if i != nic.index]
        nics_path(spec).write_text(json.dumps(attached))
