"""What a driver offers for NIC hot-plug, checked with ``isinstance`` (optional protocol)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from corral.domain.instance import InstanceSpec
from corral.domain.network import NicSpec


@runtime_checkable
class NicHotplug(Protocol):
    def attach_nic(self, spec: InstanceSpec, nic: NicSpec) -> None:
        """Give the running guest ``nic`` (its host-side device exists when this returns)."""
        ...

    def detach_nic(self, spec: InstanceSpec, nic: NicSpec) -> None:
        """Take ``nic`` away from the running guest."""
        ...
