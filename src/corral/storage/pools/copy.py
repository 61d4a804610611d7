"""Copy-on-write file clones (FICLONE) with a sparse, progress-reporting copy as fallback.

The one clone helper of Corral: pools (create from a base image, clone), snapshots, reverts
and backups' point-in-time copies all use ``clone_file``."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

FICLONE = 0x40049409  # _IOW(0x94, 9, int): linux/fs.h
_CHUNK = 4 << 20
_NO_CLONE = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS}
_NO_RANGE_COPY = {errno.EXDEV, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS}

Progress = Callable[[float, str], None]


def _quiet(fraction: float, phase: str) -> None:
    del fraction, phase


def reflink_works(directory: Path) -> bool:
    """Whether files in ``directory`` can be cloned copy-on-write (tried, not guessed).

    The probe clones an empty file: the kernel refuses a file system without clones before
    it looks at the length, and no data block is needed -- a full pool (whose data space
    is gone) answered `storage list` with a 500 when the probe wrote 6 KiB. Where even an
    empty file cannot be made (no space or quota left at all), the answer is "no"."""
    try:
        with tempfile.TemporaryDirectory(prefix=".reflink-probe-", dir=directory) as tmp:
            src, dst = Path(tmp) / "a", Path(tmp) / "b"
            src.touch()
            with src.open("rb") as s, dst.open("wb") as d:
                try:
                    fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
                except OSError:
                    return False
            return True
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return False
        raise


def clone_file(src: Path, dst: Path, progress: Progress = _quiet) -> bool:
    """Make ``dst`` a copy of ``src``: a reflink where the filesystem shares extents (True),
    else a sparse copy that skips holes and reports progress (False). ``dst`` must not exist;
    it is removed again if the copy fails."""
    with src.open("rb") as s, dst.open("xb") as d:
        try:
            try:
                fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
                progress(1.0, "cloned (copy-on-write)")
                return True
            except OSError as exc:
                if exc.errno not in _NO_CLONE:
                    raise
            _sparse_copy(s.fileno(), d.fileno(), os.fstat(s.fileno()).st_size, progress)
            return False
        except BaseException:
            with contextlib.suppress(OSError):
                dst.unlink()
            raise


def _sparse_copy(src: int, dst: int, size: int, progress: Progress) -> None:
    """Copy only the data extents (SEEK_DATA/SEEK_HOLE); holes stay holes."""
    os.ftruncate(dst, size)
    offset = 0
    while offset < size:
        try:
            start = os.lseek(src, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                break
            raise
        end = os.lseek(src, start, os.SEEK_HOLE)
        position = start
        while position < end:
            count = min(_CHUNK, end - position)
            copied = _copy_range(src, dst, count, position)
            if copied == 0:
                break
            position += copied
            progress(position / size, "copying")
        offset = end
    progress(1.0, "copied")


def _copy_range(src: int, dst: int, count: int, position: int) -> int:
    """``copy_file_range`` (in-kernel; server-side on NFS), or read + write where the kernel
    refuses it between these two filesystems (EXDEV since Linux 5.19, e.g. host ext4 to a
    loop-mounted btrfs pool)."""
    try:
        return os.copy_file_range(src, dst, count, position, position)
    except OSError as exc:
        if exc.errno not in _NO_RANGE_COPY:
            raise
    data = os.pread(src, count, position)
    view = memoryview(data)
    written = 0
    while written < len(data):
        written += os.pwrite(dst, view[written:], position + written)
    return len(data)
