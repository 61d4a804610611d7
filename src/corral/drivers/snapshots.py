"""Snapshot hooks: what a driver adds for snapshots and online backups.

Kept apart from the ``Driver`` Protocol (drivers/base.py) so the core contract stays small;
every driver (fake, lxc, qemu) has a ``snapshots.py`` implementing ``SnapshotHooks`` and
hands an instance of it out as ``Hooks.snapshots`` (``driver.hooks()``). A snapshot is a
directory: ``root.img`` (a copy-on-write clone of the disk where the filesystem can, else a
sparse copy) and, with memory, the runtime state (``vmstate.qcow2`` for QEMU, CRIU images
for LXC, ``state.json`` for the fake driver).

Every disk of an instance (root and data disks) is copied at one point in time: the
service names the copies (``DiskCopy``: the root disk first), the hooks make them all while
the instance is quiesced once (a container frozen, a VM paused or one QMP transaction).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from corral.domain.errors import HostFailure
from corral.domain.instance import InstanceSpec
from corral.network.nicfile import read_nics
from corral.storage.pools.copy import clone_file
from corral.templates.image import TemplateImage


def clone(src: Path, dst: Path) -> str:
    """``dst`` as a copy-on-write clone of ``src`` where the filesystem can (else a sparse
    copy): storage's one clone helper. Returns the method, for listings and manifests."""
    return "reflink" if clone_file(src, dst) else "sparse copy"


ROOT = "root"


@dataclass(frozen=True)
class DiskCopy:
    """One disk to copy: ``name`` (``root`` or a data disk's), from ``source`` to ``dest``.
    Taking a snapshot or a backup copies disk -> copy; a revert copies copy -> disk."""

    name: str
    source: Path
    dest: Path


def clone_all(copies: Sequence[DiskCopy]) -> str:
    """Clone every copy (made consistent by the caller); "reflink" if all were."""
    methods = {clone(c.source, c.dest) for c in copies}
    return "reflink" if methods == {"reflink"} else "sparse copy"


def replace_disks(copies: Sequence[DiskCopy]) -> None:
    """Make the (stopped) instance's disks copies of the snapshot's: every copy is cloned
    beside its disk first, then all are renamed into place (nothing changes if a clone
    fails)."""
    made: list[tuple[Path, Path]] = []
    try:
        for c in copies:
            tmp = c.dest.with_name(f".{c.dest.name}.revert")
            tmp.unlink(missing_ok=True)
            made.append((tmp, c.dest))
            clone(c.source, tmp)
    except BaseException:
        for tmp, _ in made:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    for tmp, dest in made:
        os.replace(tmp, dest)


DEVICES = "devices.json"


def device_set(spec: InstanceSpec) -> dict[str, list[str]]:
    """The devices a start of ``spec`` gives the instance (data disks by name, NICs by index
    and MAC): a memory snapshot can only be loaded into a runtime with the same ones."""
    return {"data disks": [d.name for d in spec.data_disks],
            "NICs": [f"{n.index}:{n.mac}" for n in read_nics(spec.directory)]}


def record_devices(spec: InstanceSpec, dest: Path) -> None:
    (dest / DEVICES).write_text(json.dumps(device_set(spec)) + "\n")


def device_changes(spec: InstanceSpec, source: Path) -> list[str]:
    """How the devices a start would use now differ from those recorded in the snapshot
    ``source`` ("data disk 'data' added", …); empty when equal or not recorded (older
    snapshots)."""
    try:
        then: dict[str, list[str]] = json.loads((source / DEVICES).read_text())
    except (FileNotFoundError, ValueError):
        return []
    now = device_set(spec)
    changes = []
    for kind, items in now.items():
        label = kind[:-1]  # "data disk", "NIC"
        before = then.get(kind, [])
        changes += [f"{label} '{x.split(':', 1)[0] if kind == 'NICs' else x}' added"
                    for x in items if x not in before]
        changes += [f"{label} '{x.split(':', 1)[0] if kind == 'NICs' else x}' removed"
                    for x in before if x not in items]
    return changes


class MemoryNotRestored(HostFailure):
    """A memory revert whose runtime state could not be loaded: the disk *is* reverted and
    the instance was booted from it (cold); the memory state is lost."""


@dataclass(frozen=True)
class Captured:
    """How a point-in-time disk copy was made, for manifests and snapshot listings."""

    consistency: str
    method: str  # "reflink", "sparse copy", "blockdev-backup", "blockdev-backup (dirty bitmap)"
    changed: Mapping[str, frozenset[int]] = field(default_factory=dict)
    """Per disk name, for disks copied incrementally (``since``): the only 4 MiB chunk
    indexes that may differ from that disk in the backup ``since`` belongs to (the copy holds
    just those); a disk without an entry was copied whole."""
    tracking: str | None = None
    """A change tracker (QEMU dirty bitmap) started at this copy's point in time, for the
    next backup's ``since``; None where the runtime has none."""


class SnapshotHooks(Protocol):
    def memory_refusal(self, spec: InstanceSpec) -> str | None:
        """None when snapshots with memory are possible here, else the reason they are not."""
        ...

    def take(self, spec: InstanceSpec, dest: Path, memory: bool,
             copies: Sequence[DiskCopy]) -> Captured:
        """Write the snapshot: every disk to its copy (the root disk's is ``dest/root.img``),
        all at one consistent point (file systems quiesced where possible) and, with
        ``memory``, the running state into the directory ``dest``. The instance keeps running
        (it pauses at most for the copy-on-write clones)."""
        ...

    def revert(
        self, spec: InstanceSpec, template: TemplateImage, source: Path, memory: bool,
        copies: Sequence[DiskCopy],
    ) -> None:
        """Return the instance to the snapshot in ``source``: every disk in ``copies`` (the
        snapshot's copy -> the disk) is replaced. Without memory the instance is left
        stopped; with memory it resumes exactly where the snapshot was taken. When the
        memory state cannot be loaded, the instance is booted from the reverted disks and
        ``MemoryNotRestored`` is raised."""
        ...

    def capture_disks(self, spec: InstanceSpec, copies: Sequence[DiskCopy],
                      since: Mapping[str, str]) -> Captured:
        """Consistent point-in-time copies of every disk (one point for all) for a backup,
        taken while the instance keeps running. ``since``: per disk, the tracker the previous
        backup (same disk size, 4 MiB chunks) started; where it still exists only the
        changed chunks are copied and named in ``Captured.changed``."""
        ...

    def drop_tracking(self, spec: InstanceSpec, tracking: str) -> None:
        """Forget a change tracker on every disk (superseded by a newer backup, or its
        backup failed)."""
        ...
