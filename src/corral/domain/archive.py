"""What a root filesystem archive may hold (pure: looks at tar headers, reads no file).

Templates arrive from outside (``corral template import``, an HTTP upload) and their
``rootfs.tar.gz`` is unpacked as root on the host, so every member is judged before it is
written, at import (the whole archive is walked) and again at extraction:

* names are relative and never climb (``..``), hard links name a member inside the archive;
* symlinks may point anywhere (``/bin/sh -> busybox`` is how a root file system looks; it is
  resolved inside the guest), but the extraction refuses to write *through* one (a member
  below a symlinked directory, or a file replacing a symlink) -- ``images.py`` checks that on
  the real tree;
* device files only for the harmless pseudo-devices every root file system has (``null``,
  ``zero``, ``full``, ``random``, ``urandom``, ``tty``, ``console``, ``ptmx``); a block device
  or ``/dev/mem`` in a template would give a guest the host's disk or memory;
* the total size of the members is bounded by the disk the archive fills (a sparse or
  highly compressed member cannot fill the host's file system while staging).
"""

from __future__ import annotations

import tarfile
from pathlib import PurePosixPath

from corral.domain.errors import InvalidInput

HARMLESS_DEVICES = frozenset({
    (tarfile.CHRTYPE, 1, 3),  # null
    (tarfile.CHRTYPE, 1, 5),  # zero
    (tarfile.CHRTYPE, 1, 7),  # full
    (tarfile.CHRTYPE, 1, 8),  # random
    (tarfile.CHRTYPE, 1, 9),  # urandom
    (tarfile.CHRTYPE, 5, 0),  # tty
    (tarfile.CHRTYPE, 5, 1),  # console
    (tarfile.CHRTYPE, 5, 2),  # ptmx
})
"""(type, major, minor) of the device nodes a root file system archive may carry."""

KINDS = {tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
         tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE, tarfile.CONTTYPE,
         tarfile.GNUTYPE_SPARSE}


def check_name(name: str, what: str = "member") -> None:
    """A member's name (or a hard link's target) stays inside the root."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\0" in name:
        raise InvalidInput(f"root filesystem archive has an unsafe {what} '{name}' "
                           "(absolute or climbing out of the root with '..')")


def check_member(member: tarfile.TarInfo) -> None:
    """InvalidInput (with the reason) for a member Corral does not unpack."""
    check_name(member.name)
    if member.type not in KINDS:
        raise InvalidInput(f"root filesystem archive member '{member.name}' is of an unknown "
                           f"kind ({member.type!r})")
    if member.islnk():
        check_name(member.linkname, f"hard link target (of '{member.name}')")
    if member.ischr() or member.isblk():
        kind = "block" if member.isblk() else "character"
        if (member.type, member.devmajor, member.devminor) not in HARMLESS_DEVICES:
            raise InvalidInput(
                f"root filesystem archive member '{member.name}' is a {kind} device "
                f"{member.devmajor}:{member.devminor}; only null, zero, full, random, urandom, "
                "tty, console and ptmx may be in a template")


class SizeBudget:
    """Sums the members' sizes (sparse ones by their full size) against a limit."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.what = what
        self.total = 0

    def add(self, member: tarfile.TarInfo) -> None:
        self.total += max(0, member.size)
        if self.total > self.limit:
            raise InvalidInput(
                f"{self.what} ({self.limit} bytes) is too small for this template: its files "
                f"reach {self.total} bytes at member '{member.name}' (sizes of sparse files "
                "count in full)")
