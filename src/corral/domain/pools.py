"""What a storage pool is, as recorded and configured (pure: no I/O; ``storage/pools``
opens and uses one, ``state`` stores it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PoolConfig:
    name: str
    driver: str
    path: Path
    """Where volumes live: the directory (dir) or the mount point (btrfs)."""
    source: Path | None = None
    """btrfs: the block device or backing file."""
    size: int | None = None
    """btrfs on a file: the file's size."""
