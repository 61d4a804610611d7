"""Data disks: further disks of an instance, beside its root disk (pure: no I/O).

A data disk is a raw image in a storage pool holding an ext4 filesystem Corral made (label =
the disk's name). A VM sees it as a virtio-blk device whose serial is the disk's name
(``/dev/disk/by-id/virtio-<name>``); a container gets it mounted at ``mount`` (default
``/mnt/<name>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from corral.domain.errors import InvalidInput

ROOT = "root"
CDROM_FILE = "cdrom.iso"
"""A VM's installer ISO (``corral create --iso``), in its instance directory."""
MAX_DATA_DISKS = 8
"""Per instance (q35 VMs get one PCIe root port per possible data disk)."""
MIN_DISK = 4 * 1024**2
CHUNK_SIZE = 4 << 20
"""A backup's fixed chunk (backup/engine.py), which is also the granularity of the dirty
bitmaps a VM keeps for incremental backups (drivers/qemu/snapshots.py): one size for both."""
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")  # a virtio-blk serial holds 20 bytes
_FORBIDDEN_MOUNTS = ("/", "/proc", "/sys", "/dev", "/run", "/etc", "/bin", "/sbin", "/lib",
                     "/usr", "/boot", "/tmp")


@dataclass(frozen=True)
class DataDisk:
    """One attached data disk as drivers see it."""

    name: str
    path: Path
    size: int
    index: int
    """1, 2, …: attach order (a VM's vdb, vdc, … when nothing was hot-plugged)."""
    mount: str = ""
    """Containers: where it appears inside (absolute path)."""

    @property
    def mount_point(self) -> str:
        return self.mount or default_mount(self.name)


def default_mount(name: str) -> str:
    return f"/mnt/{name}"


def validate_disk_name(name: str) -> str:
    if name == ROOT:
        raise InvalidInput("'root' is the root disk's name; give a data disk another name")
    if not _NAME.match(name):
        raise InvalidInput(
            f"disk name '{name}' is not valid: 1-20 characters of a-z, 0-9 and '-', "
            "starting with a letter"
        )
    return name


def validate_mount(path: str) -> str:
    """An absolute, normalised path inside the container that is not a system directory."""
    pure = PurePosixPath(path)
    if not pure.is_absolute() or ".." in pure.parts or str(pure) != path.rstrip("/"):
        raise InvalidInput(f"mount path '{path}' must be absolute and normalised (no '..')")
    if any(c.isspace() for c in path) or "\\" in path:
        raise InvalidInput(f"mount path '{path}' must not contain spaces or backslashes")
    if str(pure) in _FORBIDDEN_MOUNTS:
        raise InvalidInput(f"mount path '{path}' is a system directory; use e.g. /mnt/data")
    return str(pure)


def validate_new_size(size: int) -> int:
    if size < MIN_DISK:
        raise InvalidInput(f"a data disk must be at least {MIN_DISK // 1024**2} MiB")
    return size


def check_grow(name: str, current: int, wanted: int) -> None:
    """Disks only grow: shrinking a filesystem under a running guest loses data."""
    if wanted < current:
        raise InvalidInput(
            f"disk '{name}' cannot shrink ({current // 1024**2} MiB -> "
            f"{wanted // 1024**2} MiB): only growing is supported; make a new, smaller disk "
            "and copy the data instead"
        )
