"""VM data disks on a running VM over QMP (``blockdev-add`` + ``device_add``).

Every data disk is a ``-blockdev`` node ``d-<name>`` under a virtio-blk device ``disk-<name>``
(serial = the disk's name), so a disk attached at start and one hot-plugged later are the same
thing to QEMU and are removed the same way (``device_del``, wait until the guest released
it, ``blockdev-del``). q35 VMs have a PCIe root port per possible data disk, pc VMs hot-plug
on the root bus (ACPI). **microvm cannot hot-plug** (virtio-mmio devices are fixed when the
machine is built; QEMU has no hot-plug bus there): a disk added to a running microvm VM is
attached at its next start, and removing one from it is refused until it is stopped.
Growing works on every machine: ``block_resize`` of the node, the guest sees it at once.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from corral.domain.disks import DataDisk
from corral.domain.errors import Conflict, HostFailure
from corral.domain.instance import InstanceSpec
from corral.drivers.base import Applied, KeyChange
from corral.drivers.qemu.cmdline import VmDisk, VmPaths, blockdev, disk_device
from corral.drivers.qemu.nics import machine_type
from corral.drivers.qemu.qmp import qmp

UNPLUG_TIMEOUT = 15.0
_HOTPLUG = ("q35", "pc")
MICROVM_WHY = ("its machine type microvm has no hot-plug bus (virtio-mmio devices are fixed "
               "when the VM starts)")


def vm_disk(disk: DataDisk) -> VmDisk:
    return VmDisk(disk.name, disk.path, disk.index)


def vm_disks(spec: InstanceSpec) -> tuple[VmDisk, ...]:
    return tuple(vm_disk(d) for d in spec.data_disks)


def _paths(spec: InstanceSpec) -> VmPaths:
    return VmPaths(spec.directory, spec.run_dir)


def _peripherals(paths: VmPaths) -> set[str]:
    found: list[dict[str, Any]] = qmp(paths.qmp, "qom-list", {"path": "/machine/peripheral"})
    return {item["name"] for item in found}


def hot_add(spec: InstanceSpec, disk: DataDisk) -> KeyChange:
    paths = _paths(spec)
    machine = machine_type(paths)
    if machine not in _HOTPLUG:
        return KeyChange(disk.name, Applied.NEXT_START,
                         f"not hot-plugged into running VM '{spec.name}': {MICROVM_WHY}; it "
                         "is attached at the next start")
    vm = vm_disk(disk)
    qmp(paths.qmp, "blockdev-add", blockdev(vm))
    try:
        qmp(paths.qmp, "device_add", disk_device(machine, vm))
    except BaseException:
        with contextlib.suppress(HostFailure):
            qmp(paths.qmp, "blockdev-del", {"node-name": vm.node})
        raise
    return KeyChange(disk.name, Applied.LIVE,
                     f"the guest sees it as /dev/disk/by-id/virtio-{disk.name}")


def hot_remove(spec: InstanceSpec, disk: DataDisk) -> KeyChange:
    paths = _paths(spec)
    vm = vm_disk(disk)
    present = vm.device_id in _peripherals(paths)
    if present:
        machine = machine_type(paths)
        if machine not in _HOTPLUG:
            raise Conflict(f"cannot remove disk '{disk.name}' from running VM '{spec.name}': "
                           f"{MICROVM_WHY}; stop the VM first")
        qmp(paths.qmp, "device_del", {"id": vm.device_id})
        deadline = time.monotonic() + UNPLUG_TIMEOUT
        while vm.device_id in _peripherals(paths):
            if time.monotonic() > deadline:
                raise HostFailure(
                    f"the guest did not release disk '{disk.name}' within "
                    f"{UNPLUG_TIMEOUT:.0f} s (it must handle PCI hot-unplug); the disk is kept"
                )
            time.sleep(0.1)
    with contextlib.suppress(HostFailure):  # absent when it was waiting for the next start
        qmp(paths.qmp, "blockdev-del", {"node-name": vm.node})
    return KeyChange(disk.name, Applied.LIVE, "unplugged" if present else
                     "it was not attached yet (waiting for the next start)")


def resize(spec: InstanceSpec, disk: DataDisk, size: int) -> KeyChange:
    paths = _paths(spec)
    vm = vm_disk(disk)
    if vm.device_id not in _peripherals(paths):
        return KeyChange(disk.name, Applied.NEXT_START,
                         "not attached yet; the VM sees the new size at its next start")
    qmp(paths.qmp, "block_resize", {"node-name": vm.node, "size": size})
    return KeyChange(disk.name, Applied.LIVE,
                     "the guest sees the larger device now; grow the filesystem inside "
                     f"(e.g. resize2fs /dev/disk/by-id/virtio-{disk.name})")


class QemuDiskHotplug:
    """The ``DiskHotplug`` protocol for ``QemuDriver`` (mixed in)."""

    def attach_disk(self, spec: InstanceSpec, disk: DataDisk) -> KeyChange:
        return hot_add(spec, disk)

    def detach_disk(self, spec: InstanceSpec, disk: DataDisk) -> KeyChange:
        return hot_remove(spec, disk)

    def resize_disk(self, spec: InstanceSpec, disk: DataDisk, size: int) -> KeyChange:
        return resize(spec, disk, size)
