"""The QEMU driver's optional parts (``Hooks``, drivers/base.py): snapshots and online
backups over QMP, NIC hot-plug where the machine has a hot-plug bus (q35, pc; a microvm VM
refuses with Unsupported and takes the NIC at its next start), live migration."""

from __future__ import annotations

from corral.drivers.base import Hooks
from corral.drivers.qemu.driver import QemuDriver
from corral.drivers.qemu.migration import QemuMigration
from corral.drivers.qemu.nics import QemuNicHotplug
from corral.drivers.qemu.snapshots import QemuSnapshots


def qemu_hooks(driver: QemuDriver) -> Hooks:
    return Hooks(snapshots=QemuSnapshots(driver), nics=QemuNicHotplug(),
                 migration=QemuMigration(driver))
