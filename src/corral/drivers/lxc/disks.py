"""Container data disks: each image loop-mounted on the host at ``run/disks/<name>`` before
``lxc-start`` and bound into the container by ``lxc.mount.entry`` (idmapped for unprivileged
containers, as the root is), unmounted when it stops.

Nothing changes inside a running container: a new disk, a removal or a grown filesystem
takes effect at the next start. Removal from a running container is refused while the disk
is mounted (its files are in use inside); a disk only queued for the next start just goes.
A grown image gets its ext4 grown offline (``e2fsck -f`` + ``resize2fs``)
right before the mount, because online ``resize2fs`` needs CAP_SYS_RESOURCE.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from corral.domain.disks import DataDisk
from corral.domain.errors import Conflict
from corral.domain.instance import InstanceSpec
from corral.drivers.base import Applied, KeyChange
from corral.host.diskgrow import grow_ext4_offline, needs_fs_grow
from corral.host.mounts import mount_image, unmount

DISKS_DIR = "disks"


def data_mount(spec: InstanceSpec, disk: DataDisk) -> Path:
    return spec.run_dir / DISKS_DIR / disk.name


def mount_data_disks(spec: InstanceSpec) -> None:
    """Grow what was grown while mounted, then mount every data disk (a no-op if mounted)."""
    done: list[Path] = []
    try:
        for disk in spec.data_disks:
            target = data_mount(spec, disk)
            if needs_fs_grow(disk.path):
                unmount(target)
                grow_ext4_offline(disk.path)
            mount_image(disk.path, target)
            done.append(target)
    except BaseException:
        for target in done:
            unmount(target)
        raise


def unmount_data_disks(spec: InstanceSpec) -> None:
    root = spec.run_dir / DISKS_DIR
    if not root.is_dir():
        return
    for target in sorted(root.iterdir()):
        unmount(target)
        with contextlib.suppress(OSError):
            target.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()


class LxcDiskHotplug:
    """The ``DiskHotplug`` protocol for ``LxcDriver`` (mixed in)."""

    def attach_disk(self, spec: InstanceSpec, disk: DataDisk) -> KeyChange:
        return KeyChange(disk.name, Applied.NEXT_START,
                         f"mounted at {disk.mount_point} from the next start (Corral does not "
                         "inject mounts into a running container)")

    def detach_disk(self, spec: InstanceSpec, disk: DataDisk) -> KeyChange:
        if not os.path.ismount(data_mount(spec, disk)):
            # Added after this start and only queued: nothing inside uses it.
            return KeyChange(disk.name, Applied.LIVE,
                             "it was queued for the next start and never mounted")
        raise Conflict(f"cannot remove disk '{disk.name}' from running container "
                       f"'{spec.name}': it is mounted at {disk.mount_point} inside; stop it "
                       "first")

    def resize_disk(self, spec: InstanceSpec, disk: DataDisk, size: int) -> KeyChange:
        del size
        return KeyChange(disk.name, Applied.NEXT_START,
                         "the image is larger now; its ext4 grows offline at the next start "
                         "(online resize2fs needs CAP_SYS_RESOURCE, which Corral does not "
                         "rely on)")
