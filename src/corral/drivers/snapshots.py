"""Snapshot hooks: what a driver adds for snapshots and online backups.

Kept apart from the ``Driver`` Protocol (drivers/base.py) so the core contract stays small;
every driver (fake, lxc, qemu) has a ``snapshots.py`` implementing ``SnapshotHooks`` and
``hooks_for`` finds it. A snapshot is a directory: ``root.img`` (a copy-on-write clone of the
disk where the filesystem can, else a sparse copy) and, with memory, the runtime state
(``vmstate.qcow2`` for QEMU, CRIU images for LXC, ``state.json`` for the fake driver).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from corral.domain.instance import InstanceSpec
from corral.storage.pools.copy import clone_file
from corral.templates.image import TemplateImage


def clone(src: Path, dst: Path) -> str:
    """``dst`` as a copy-on-write clone of ``src`` where the filesystem can (else a sparse
    copy): storage's one clone helper. Returns the method, for listings and manifests."""
    return "reflink" if clone_file(src, dst) else "sparse copy"


def replace_disk(spec: InstanceSpec, source: Path) -> None:
    """Make the instance's (stopped) disk a copy of ``source``, atomically."""
    disk = spec.disk_path
    tmp = disk.with_name(f".{disk.name}.revert")
    tmp.unlink(missing_ok=True)
    clone(source, tmp)
    os.replace(tmp, disk)


@dataclass(frozen=True)
class Captured:
    """How a point-in-time disk copy was made, for manifests and snapshot listings."""

    consistency: str
    method: str  # "reflink", "sparse copy", "blockdev-backup", "blockdev-backup (dirty bitmap)"
    changed: frozenset[int] | None = None
    """With ``since``: the only 4 MiB chunk indexes that may differ from the backup ``since``
    belongs to (the copy holds just those); None: the copy is the whole disk."""
    tracking: str | None = None
    """A change tracker (QEMU dirty bitmap) started at this copy's point in time, for the
    next backup's ``since``; None where the runtime has none."""


class SnapshotHooks(Protocol):
    def memory_refusal(self, spec: InstanceSpec) -> str | None:
        """None when snapshots with memory are possible here, else the reason they are not."""
        ...

    def take(self, spec: InstanceSpec, dest: Path, memory: bool) -> Captured:
        """Write the snapshot into the empty directory ``dest``: ``dest/root.img`` consistent
        (file systems quiesced where possible) and, with ``memory``, the running state. The
        instance keeps running (it pauses at most for the copy-on-write clone)."""
        ...

    def revert(
        self, spec: InstanceSpec, template: TemplateImage, source: Path, memory: bool
    ) -> None:
        """Return the instance to the snapshot in ``source``. Without memory the instance is
        left stopped; with memory it resumes exactly where the snapshot was taken."""
        ...

    def capture_disk(self, spec: InstanceSpec, dest: Path, since: str | None = None) -> Captured:
        """A consistent point-in-time copy of the disk at ``dest`` for a backup, taken while
        the instance keeps running. ``since``: the tracker the previous backup (same disk
        size, 4 MiB chunks) started; where it still exists only the changed chunks are
        copied and named in ``Captured.changed``."""
        ...

    def drop_tracking(self, spec: InstanceSpec, tracking: str) -> None:
        """Forget a change tracker (superseded by a newer backup, or its backup failed)."""
        ...


def hooks_for(driver: object) -> SnapshotHooks | None:
    """The snapshot hooks of ``driver`` (by its class; each driver has its own module), or
    None for a driver without any."""
    from corral.drivers.fake.driver import FakeDriver
    from corral.drivers.fake.snapshots import FakeSnapshots

    if isinstance(driver, FakeDriver):
        return FakeSnapshots(driver)
    from corral.drivers.lxc.driver import LxcDriver
    from corral.drivers.qemu.driver import QemuDriver

    if isinstance(driver, LxcDriver):
        from corral.drivers.lxc.snapshots import LxcSnapshots

        return LxcSnapshots(driver)
    if isinstance(driver, QemuDriver):
        from corral.drivers.qemu.snapshots import QemuSnapshots

        return QemuSnapshots(driver)
    return None
