"""What a driver offers for data disks on a running instance, checked with ``isinstance``
(optional protocol). A stopped instance needs none of it: drivers attach every disk of
``spec.data_disks`` at start."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from corral.domain.disks import DataDisk
from corral.domain.instance import InstanceSpec
from corral.drivers.base import KeyChange


@runtime_checkable
class DiskHotplug(Protocol):
    def attach_disk(self, spec: InstanceSpec, disk: DataDisk) -> KeyChange:
        """Give the running guest ``disk`` now (``live``), or say why only at the next start
        (``next start``). Raise only when something failed."""
        ...

    def detach_disk(self, spec: InstanceSpec, disk: DataDisk) -> KeyChange:
        """Take ``disk`` from the running guest (its image is deleted afterwards, so refuse
        with Conflict when it cannot be let go of now)."""
        ...

    def resize_disk(self, spec: InstanceSpec, disk: DataDisk, size: int) -> KeyChange:
        """The image file is already ``size`` bytes: make the running guest see it."""
        ...
