"""Pool drivers: ``dir`` (a directory on any filesystem) and ``btrfs`` (a btrfs filesystem on
a block device or on a loop-backed file).

A pool holds files only: ``volumes/<instance id>/<disk>.img`` (instance disks) and
``bases/<key>.img`` (a template's root filesystem built once, cloned for every create).
Clones are ``FICLONE`` reflinks wherever the filesystem shares extents (btrfs, XFS with
reflink), else sparse copies with progress; ``cow`` says which, found by trying.

A btrfs pool on a file is mounted with ``mount -o loop``: util-linux sets the loop device's
autoclear flag, so unmounting the pool detaches the loop device — nothing else tracks it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from corral.domain.errors import Conflict, HostFailure, InvalidInput, Unsupported
from corral.domain.pools import PoolConfig
from corral.host.mounts import is_mounted
from corral.host.run import require_tool, run
from corral.storage.pools.copy import reflink_works

DRIVERS = ("dir", "btrfs")
MIN_BTRFS = 256 * 1024**2


@dataclass(frozen=True)
class PoolUsage:
    total: int
    used: int
    free: int


class Pool:
    def __init__(self, config: PoolConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def path(self) -> Path:
        return self.config.path

    # -- layout --------------------------------------------------------------------------
    def volume_dir(self, instance_id: int) -> Path:
        return self.path / "volumes" / str(instance_id)

    def volume(self, instance_id: int, disk: str) -> Path:
        return self.volume_dir(instance_id) / f"{disk}.img"

    def base(self, key: str) -> Path:
        return self.path / "bases" / f"{key}.img"

    def volume_count(self) -> int:
        root = self.path / "volumes"
        return sum(1 for _ in root.glob("*/*.img")) if root.is_dir() else 0

    # -- lifecycle -----------------------------------------------------------------------
    def create(self) -> None:
        """Make the pool on the host (first time)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._prepare_dirs()

    def activate(self) -> None:
        """Make the pool usable after a (host or daemon) restart."""
        if not self.path.is_dir():
            raise HostFailure(f"pool '{self.name}': {self.path} is missing")
        self._prepare_dirs()

    def deactivate(self) -> None:
        """Release host resources (btrfs: unmount, which detaches the loop device)."""

    def destroy(self) -> None:
        """Remove the pool from the host; it must hold no volumes."""
        shutil.rmtree(self.path / "bases", ignore_errors=True)
        for sub in ("volumes", ""):
            with contextlib.suppress(OSError):
                (self.path / sub).rmdir()

    def _prepare_dirs(self) -> None:
        for sub in ("volumes", "bases"):
            (self.path / sub).mkdir(exist_ok=True)
        # Unprivileged containers (host uid 100000+) must be able to walk to their disk.
        for sub in ("", "volumes"):
            target = self.path / sub
            target.chmod(target.stat().st_mode | 0o111)

    @property
    def active(self) -> bool:
        return self.path.is_dir()

    def cow(self) -> bool:
        return self.active and reflink_works(self.path)

    def usage(self) -> PoolUsage:
        """A dir pool shares its filesystem: ``used`` is what the pool's own files allocate
        (shared reflinked extents counted once per file), ``total``/``free`` the filesystem's."""
        if not self.active:
            return PoolUsage(0, 0, 0)
        st = os.statvfs(self.path)
        allocated = 0
        for folder, _dirs, files in os.walk(self.path):
            for name in files:
                with contextlib.suppress(OSError):
                    allocated += os.lstat(os.path.join(folder, name)).st_blocks * 512
        return PoolUsage(total=st.f_blocks * st.f_frsize, used=allocated,
                         free=st.f_bavail * st.f_frsize)

    def _filesystem_usage(self) -> PoolUsage:
        st = os.statvfs(self.path)
        total = st.f_blocks * st.f_frsize
        free = st.f_bavail * st.f_frsize
        return PoolUsage(total=total, used=total - st.f_bfree * st.f_frsize, free=free)


class BtrfsPool(Pool):
    """btrfs on a block device, or on a file attached through a loop device."""

    def usage(self) -> PoolUsage:
        """The pool's own filesystem: shared (CoW) extents count once."""
        return self._filesystem_usage() if self.active else PoolUsage(0, 0, 0)

    @property
    def source(self) -> Path:
        if self.config.source is None:
            raise InvalidInput(f"btrfs pool '{self.name}' needs a source (device or file)")
        return self.config.source

    def _is_file_backed(self) -> bool:
        return not self.source.is_block_device()

    def create(self) -> None:
        mkfs = require_tool("mkfs.btrfs", "btrfs-progs")
        made_file = False
        if not self.source.exists():
            if self.config.size is None:
                raise InvalidInput(f"btrfs pool '{self.name}': give a size for the new file "
                                   f"{self.source}")
            if self.config.size < MIN_BTRFS:
                raise InvalidInput(f"btrfs pool '{self.name}' must be at least 256 MiB")
            self.source.parent.mkdir(parents=True, exist_ok=True)
            with self.source.open("xb") as handle:
                handle.truncate(self.config.size)
            made_file = True
        elif not self.source.is_block_device():
            raise Conflict(f"{self.source} already exists; a btrfs pool is made on a block "
                           "device or on a new file")
        try:
            proc = run([mkfs, "-q", "-L", f"corral-{self.name}", str(self.source)],
                       check=False, timeout=120)
            if proc.returncode != 0:
                said = (proc.stderr or proc.stdout).decode(errors="replace").strip()
                raise HostFailure(f"mkfs.btrfs failed on {self.source}: {said}")
            self.activate()
        except BaseException:
            if made_file:
                self.source.unlink(missing_ok=True)
            raise

    def activate(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        if not is_mounted(self.path):
            if not self.source.exists():
                raise HostFailure(f"pool '{self.name}': its source {self.source} is missing")
            mount = require_tool("mount", "mount")
            options = "loop" if self._is_file_backed() else "defaults"
            proc = run([mount, "-t", "btrfs", "-o", options, str(self.source), str(self.path)],
                       check=False, timeout=60)
            if proc.returncode != 0:
                said = (proc.stderr or proc.stdout).decode(errors="replace").strip()
                raise Unsupported(f"cannot mount btrfs pool '{self.name}' from {self.source}: "
                                  f"{said}")
        self._prepare_dirs()

    def deactivate(self) -> None:
        if not is_mounted(self.path):
            return
        umount = require_tool("umount", "mount")
        proc = run([umount, str(self.path)], check=False, timeout=60)
        if proc.returncode != 0:
            said = (proc.stderr or proc.stdout).decode(errors="replace").strip()
            raise Conflict(f"pool '{self.name}' is in use (running instances?): {said}")

    def destroy(self) -> None:
        self.deactivate()
        with contextlib.suppress(OSError):
            self.path.rmdir()
        if self._is_file_backed():
            self.source.unlink(missing_ok=True)

    @property
    def active(self) -> bool:
        return self.path.is_dir() and is_mounted(self.path)


def open_pool(config: PoolConfig) -> Pool:
    if config.driver == "dir":
        return Pool(config)
    if config.driver == "btrfs":
        return BtrfsPool(config)
    raise InvalidInput(f"pool driver '{config.driver}' is not one of: {', '.join(DRIVERS)}")
