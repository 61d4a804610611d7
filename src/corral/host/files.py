"""File-system calls Python's ``os`` module lacks, made through libc in this one place.

``fallocate(FALLOC_FL_PUNCH_HOLE)``: a migration target turns a chunk the source no longer
holds data in back into a hole, so a sparse image stays sparse (``os.posix_fallocate`` can
only allocate).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Deallocate ``length`` bytes at ``offset`` of the open file ``fd`` (they read as
    zeros, the file keeps its size); OSError where the file system cannot."""
    result = _libc().fallocate(ctypes.c_int(fd),
                               ctypes.c_int(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE),
                               ctypes.c_long(offset), ctypes.c_long(length))
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
