"""Root disk images: a template's root filesystem archive becomes an ext4 filesystem image.

The same image is a container's root (loop-mounted) and a VM's ``/dev/vda`` (DESIGN.md,
"One disk format"). e2fsprogs populates the filesystem from a directory (``mkfs.ext4 -d``), so
nothing is mounted and no loop device is needed to build it.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from corral.domain.archive import SizeBudget, check_member
from corral.domain.errors import HostFailure, InvalidInput
from corral.host.run import require_tool, run
from corral.host.untar import extract_all, with_owner

BLOCK = 4096
GROUP_BYTES = 8 * BLOCK * BLOCK  # blocks per group = 8 x the block size (one bitmap block)
MAX_GROW = 16 * 1024**4
"""Every image Corral makes can grow (offline ``resize2fs``) to at least this size."""
# ext4 caps a file system at 2**32 inodes and a group at 8 x block size inodes; the inode
# count per group is fixed at mkfs time and multiplies with the number of groups on a grow.
_MAX_INODES_PER_GROUP = (2**32 - 1) // -(-MAX_GROW // GROUP_BYTES)
_INODE_RATIO = 16384
# ext4 metadata (inode tables, journal, group descriptors, reserved blocks) on small images:
# measured with mkfs.ext4 defaults it stays below a quarter of the image plus 4 MiB.
_OVERHEAD_FIXED = 4 * 1024**2
_OVERHEAD_FRACTION = 0.25


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _shifting_filter(
    uid_shift: int, root: Path, limit: int
) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo]:
    """Judge each member before tarfile writes it (``domain.archive``), on the real tree:
    nothing is written through a symlink (tarfile would open, chown and chmod the link's
    target, a host file), a hard link's target resolves inside the root, and the content
    stays within ``limit`` bytes (the disk it fills)."""
    root_real = os.path.realpath(root)
    budget = SizeBudget(limit, f"disk size {_mib(limit)}")

    def _filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        check_member(member)
        budget.add(member)
        parent = os.path.realpath(os.path.join(dest, os.path.dirname(member.name)))
        if not _inside(parent, root_real):
            raise InvalidInput(
                f"root filesystem archive member '{member.name}' leads outside the root "
                "(through a symlink)"
            )
        target = os.path.join(dest, member.name)
        if not member.issym() and os.path.islink(target):
            raise InvalidInput(
                f"root filesystem archive member '{member.name}' would be written through "
                f"the symlink of the same name (to {os.readlink(target)})"
            )
        if member.islnk():
            source = os.path.realpath(os.path.join(dest, member.linkname))
            if not _inside(source, root_real):
                raise InvalidInput(
                    f"root filesystem archive member '{member.name}' is a hard link to "
                    f"'{member.linkname}', which leads outside the root (through a symlink)"
                )
        if uid_shift:
            return with_owner(member, member.uid + uid_shift, member.gid + uid_shift)
        return member

    return _filter


def content_size(tree: Path) -> int:
    """Bytes the files under ``tree`` occupy, rounded up to whole ext4 blocks, plus inodes."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in filenames + dirnames:
            st = os.lstat(os.path.join(dirpath, name))
            total += -(-st.st_size // BLOCK) * BLOCK + 256
    return total


def count_entries(tree: Path) -> int:
    """Files, directories and links under ``tree`` (each takes an inode)."""
    return sum(len(names) + len(dirs) for _, dirs, names in os.walk(tree))


def mkfs_layout(size_bytes: int, entries: int = 0) -> list[str]:
    """mkfs.ext4 options that let an image of ``size_bytes`` grow to ``MAX_GROW``.

    mke2fs picks its "small" profile for images under 512 MiB (1 KiB blocks, one inode per
    4 KiB): the group descriptors of such a file system overflow a group past ~1 TiB ("New
    size results in too many block group descriptors") and its inodes pass the 2**32 limit
    before 16 TiB. 4 KiB blocks and one inode per 16 KiB (mke2fs's default profile) grow to
    16 TiB; a tree with many small files gets the inodes it needs, capped so that the
    per-group count still fits 2**32 inodes at ``MAX_GROW``.
    """
    groups = max(1, -(-size_bytes // GROUP_BYTES))
    inodes = max(size_bytes // _INODE_RATIO, entries + entries // 4 + 256)
    inodes = min(inodes, groups * _MAX_INODES_PER_GROUP)
    return ["-b", str(BLOCK), "-T", "default", "-N", str(inodes)]


def minimum_size(content: int) -> int:
    """The smallest image size that holds ``content`` bytes of files on ext4."""
    return int(content / (1 - _OVERHEAD_FRACTION)) + _OVERHEAD_FIXED


def build_root_disk(rootfs_tar: Path, dest: Path, size_bytes: int, uid_shift: int = 0) -> None:
    """Make ``dest``: a sparse raw image of ``size_bytes`` holding an ext4 filesystem (label
    ``root``) with the content of ``rootfs_tar``; ids shifted by ``uid_shift`` when > 0.

    InvalidInput when the size cannot hold the content; HostFailure when a tool fails. A
    partial image is never left behind.
    """
    if uid_shift < 0:
        raise InvalidInput(f"uid shift must not be negative, not {uid_shift}")
    if not rootfs_tar.is_file():
        raise InvalidInput(f"root filesystem archive '{rootfs_tar}' does not exist")
    if dest.exists():
        raise InvalidInput(f"disk image '{dest}' already exists")
    mkfs = require_tool("mkfs.ext4", "e2fsprogs")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="corral-rootfs-", dir=dest.parent) as tmp:
        tree = Path(tmp) / "root"
        tree.mkdir()
        try:
            with tarfile.open(rootfs_tar, "r:*") as archive:
                extract_all(archive, tree, _shifting_filter(uid_shift, tree, size_bytes),
                            numeric_owner=True)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise HostFailure(f"cannot unpack '{rootfs_tar}': {exc}") from exc
        if uid_shift:
            st = tree.stat()
            if st.st_uid < uid_shift:
                os.chown(tree, st.st_uid + uid_shift, st.st_gid + uid_shift)
        needed = minimum_size(content_size(tree))
        entries = count_entries(tree)
        if size_bytes < needed:
            raise InvalidInput(
                f"disk size {_mib(size_bytes)} is too small for this template: its files "
                f"need at least {_mib(needed)} on ext4"
            )
        # mkfs.ext4 -d copies the tree's contents but not its top directory's owner.
        top = tree.stat()
        owner = f"{top.st_uid}:{top.st_gid}"
        try:
            with open(dest, "xb") as image:
                image.truncate(size_bytes)
            proc = run(
                [mkfs, "-q", "-F", *mkfs_layout(size_bytes, entries), "-L", "root",
                 "-E", f"root_owner={owner}", "-d", str(tree), str(dest)],
                check=False,
                timeout=600,
            )
            if proc.returncode != 0:
                said = (proc.stderr or proc.stdout).decode(errors="replace").strip()
                if "space" in said.lower() or "could not allocate" in said.lower():
                    raise InvalidInput(
                        f"disk size {_mib(size_bytes)} is too small for this template "
                        f"(mkfs.ext4: {said})"
                    )
                raise HostFailure(f"mkfs.ext4 failed (exit {proc.returncode}): {said}")
        except BaseException:
            dest.unlink(missing_ok=True)
            raise


PARTIAL = ".partial"
"""The suffix of a data disk image being made (``make_data_disk``)."""


def make_data_disk(dest: Path, size_bytes: int, label: str) -> None:
    """Make ``dest``: a sparse raw image of ``size_bytes`` holding an empty ext4 filesystem
    labelled ``label``, its root directory owned by uid/gid 0 (unshifted, like root disks).

    Made as ``.<name>.partial`` beside it and renamed when whole: a corrald killed during
    the mkfs leaves no half-made ``dest`` (the start-up sweep removes the partial file)."""
    if dest.exists():
        raise InvalidInput(f"disk image '{dest}' already exists")
    mkfs = require_tool("mkfs.ext4", "e2fsprogs")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}{PARTIAL}")
    partial.unlink(missing_ok=True)
    try:
        with open(partial, "xb") as image:
            image.truncate(size_bytes)
        proc = run([mkfs, "-q", "-F", *mkfs_layout(size_bytes), "-L", label[:16],
                    "-E", "root_owner=0:0", str(partial)], check=False, timeout=600)
        if proc.returncode != 0:
            said = (proc.stderr or proc.stdout).decode(errors="replace").strip()
            raise HostFailure(f"mkfs.ext4 failed (exit {proc.returncode}): {said}")
        os.rename(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
