"""Growing raw disk images: the file now, the ext4 filesystem inside offline.

Online ``resize2fs`` of a mounted ext4 needs CAP_SYS_RESOURCE, which some hosts (and every
unprivileged container) lack; the offline path (``e2fsck -f -y`` then ``resize2fs`` on the
unmounted image) works everywhere, so a container's filesystem grows at its next start.
"""

from __future__ import annotations

import struct
from pathlib import Path

from corral.domain.errors import HostFailure
from corral.host.run import require_tool, run

EXT4_MAGIC = 0xEF53
_INCOMPAT_64BIT = 0x80


def grow_file(path: Path, size: int) -> None:
    """Make ``path`` ``size`` bytes long (sparse); never shrinks it."""
    try:
        with path.open("r+b") as image:
            if image.seek(0, 2) < size:
                image.truncate(size)
    except OSError as exc:
        raise HostFailure(f"cannot grow disk image {path}: {exc}") from exc


def ext4_bytes(superblock: bytes) -> int | None:
    """Filesystem size in bytes from the 1024-byte ext2/3/4 superblock, None if not ext."""
    if len(superblock) < 0x160:
        return None
    (magic,) = struct.unpack_from("<H", superblock, 0x38)
    if magic != EXT4_MAGIC:
        return None
    (blocks_lo,) = struct.unpack_from("<I", superblock, 0x04)
    (log_block,) = struct.unpack_from("<I", superblock, 0x18)
    (incompat,) = struct.unpack_from("<I", superblock, 0x60)
    blocks_hi = struct.unpack_from("<I", superblock, 0x150)[0] if incompat & _INCOMPAT_64BIT else 0
    return int(((blocks_hi << 32) | blocks_lo) * (1024 << log_block))


def filesystem_bytes(image: Path) -> int | None:
    try:
        with image.open("rb") as handle:
            handle.seek(1024)
            found = ext4_bytes(handle.read(1024))
            return found
    except OSError:
        return None


def needs_fs_grow(image: Path) -> bool:
    """Whether ``image`` holds an ext filesystem smaller than the file (by a block or more)."""
    fs = filesystem_bytes(image)
    return fs is not None and image.stat().st_size - fs >= 1024**2


def grow_ext4_offline(image: Path) -> None:
    """e2fsck -f -y + resize2fs of an unmounted image to its file size."""
    e2fsck = require_tool("e2fsck", "e2fsprogs")
    resize2fs = require_tool("resize2fs", "e2fsprogs")
    proc = run([e2fsck, "-f", "-y", str(image)], check=False, timeout=600)
    if proc.returncode not in (0, 1):  # 1: errors corrected
        said = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        raise HostFailure(f"e2fsck of {image} failed (exit {proc.returncode}): {said}")
    run([resize2fs, str(image)], timeout=600)
