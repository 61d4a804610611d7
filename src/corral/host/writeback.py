"""Start the write-back of a file's dirty pages without waiting for it.

A loop device bound to a file flushes that file's dirty pages first (``LOOP_CONFIGURE`` on
kernel 6.18 here: 123-135 ms for a freshly written 256 MiB image, 2 ms once flushed): a
migrated container's root image, written by the disk pre-copy moments before its restore,
paid that inside the move's downtime. ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` queues the
write-back and returns; by the time the image is attached most of it is on disk.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from pathlib import Path

SYNC_FILE_RANGE_WRITE = 2
_libc = ctypes.CDLL(None, use_errno=True)
_libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                                  ctypes.c_uint]
_libc.sync_file_range.restype = ctypes.c_int


def start_writeback(path: Path) -> None:
    """Queue the write-back of ``path``'s dirty pages (best effort: a file system without
    it, or a file gone, is left to the kernel's own write-back)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _libc.sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)
        finally:
            os.close(fd)
