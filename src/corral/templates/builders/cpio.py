"""A minimal writer for the ``newc`` cpio format the kernel unpacks as an initramfs."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from typing import BinaryIO

TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    name: str  # path without a leading slash
    mode: int  # full st_mode (file type bits included)
    data: bytes = b""  # file content, or the target of a symlink


def _pad(n: int) -> bytes:
    return b"\0" * ((4 - n % 4) % 4)


def _header(ino: int, entry: Entry, size: int, name: bytes) -> bytes:
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (ino, entry.mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name) + 1, 0)
    return b"070701" + b"".join(f"{value:08x}".encode() for value in fields)


def write_newc(out: BinaryIO, entries: list[Entry]) -> None:
    """Write ``entries`` (parents before children) and the trailer; owner root, mtime 0."""
    for ino, entry in enumerate([*entries, Entry(TRAILER, 0)], start=1):
        name = entry.name.lstrip("/").encode()
        kind = stat.S_IFMT(entry.mode)
        if entry.name != TRAILER and kind not in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
            raise ValueError(f"cpio entry '{entry.name}' is not a file, directory or symlink")
        body = entry.data if kind in (stat.S_IFREG, stat.S_IFLNK) else b""
        head = _header(ino if entry.name != TRAILER else 0, entry, len(body), name)
        out.write(head + name + b"\0")
        out.write(_pad(len(head) + len(name) + 1))
        out.write(body)
        out.write(_pad(len(body)))
