"""What a driver offers for NIC hot-plug: an object it hands out as ``Hooks.nics``
(drivers/base.py), present exactly where ``Capabilities.nic_hotplug`` is true."""

from __future__ import annotations

from typing import Protocol

from corral.domain.instance import InstanceSpec
from corral.domain.network import NicSpec


class NicHotplug(Protocol):
    def attach_nic(self, spec: InstanceSpec, nic: NicSpec) -> None:
        """Give the running guest ``nic`` (its host-side device exists when this returns);
        Unsupported where this instance cannot take one live (a VM without a hot-plug bus),
        leaving nothing behind."""
        ...

    def detach_nic(self, spec: InstanceSpec, nic: NicSpec) -> None:
        """Take ``nic`` away from the running guest."""
        ...
