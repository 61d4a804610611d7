"""Unpacking a tar archive through a member filter, on every Python Corral runs on.

Why it exists: tarfile's extraction filters (PEP 706: ``extractall(filter=…)``,
``tarfile.data_filter``, ``TarInfo.replace``) came in Python 3.11.4, and Debian 12's own
python3.11 is 3.11.2 (3.11.2-6+deb12u9 still has none of them) -- the interpreter
``scripts/setup.sh`` and the Debian package run Corral on. Without this module every create
crashed there with "extractall() got an unexpected keyword argument 'filter'".

What it keeps the same: a filter is called with each member and the destination just
before that member is written (so it can judge the tree as it is at that moment, as
``storage.images`` does), may return a changed copy or None (skip), and raises to stop;
directories are made with a safe mode first and get their owner, times and mode after
every member is written -- tarfile's own ``extractall`` order. Where the running Python has
filters, tarfile's own code is used.
"""

from __future__ import annotations

import copy
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

Filter = Callable[[tarfile.TarInfo, str], "tarfile.TarInfo | None"]

NATIVE = hasattr(tarfile, "data_filter")
"""Whether this Python's tarfile has PEP 706 filters (3.11.4+, 3.12+)."""


def extract_all(archive: tarfile.TarFile, dest: Path, member_filter: Filter | str,
                numeric_owner: bool = False) -> None:
    """Unpack ``archive`` into ``dest``, each member judged by ``member_filter`` (a
    callable, or ``"data"`` for tarfile's data filter)."""
    if NATIVE:
        archive.extractall(str(dest), numeric_owner=numeric_owner,
                           filter=member_filter)  # type: ignore[arg-type]
        return
    judge = data_filter if member_filter == "data" else member_filter
    assert callable(judge)
    where = str(dest)
    directories: list[tarfile.TarInfo] = []
    for member in archive:
        judged = judge(member, where)
        if judged is None:
            continue
        if judged.isdir():
            directories.append(judged)
            first = copy.copy(judged)
            first.mode = 0o700  # writable for the members below it; its own mode comes last
            archive.extract(first, where, set_attrs=False, numeric_owner=numeric_owner)
        else:
            archive.extract(judged, where, numeric_owner=numeric_owner)
    directories.sort(key=lambda d: d.name, reverse=True)
    for directory in directories:
        path = os.path.join(where, directory.name)
        archive.chown(directory, path, numeric_owner)
        archive.utime(directory, path)
        archive.chmod(directory, path)


def with_owner(member: tarfile.TarInfo, uid: int, gid: int) -> tarfile.TarInfo:
    """A copy of ``member`` owned by ``uid``:``gid`` (``TarInfo.replace`` where it exists)."""
    if NATIVE:
        return member.replace(uid=uid, gid=gid, deep=False)
    changed = copy.copy(member)
    changed.uid, changed.gid = uid, gid
    return changed


class FilterError(tarfile.TarError):
    """A member the data filter refuses (tarfile's own class where it has one)."""


def data_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """PEP 706's "data" filter, for a Python without it: names and link targets stay inside
    ``dest``, no absolute paths, no device or FIFO files, no set-id or sticky bits, no
    group/other write, no owner from the archive."""
    if NATIVE:
        return tarfile.data_filter(member, dest)
    dest_real = os.path.realpath(dest)
    name = member.name.lstrip("/" + os.sep)
    if os.path.isabs(name) or name.startswith(".."):
        raise FilterError(f"member '{member.name}' has an absolute or parent path")
    target = os.path.realpath(os.path.join(dest_real, name))
    if os.path.commonpath([target, dest_real]) != dest_real:
        raise FilterError(f"member '{member.name}' would be extracted outside the destination")
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise FilterError(f"member '{member.name}' is a special file")
    if member.issym() or member.islnk():
        if os.path.isabs(member.linkname):
            raise FilterError(f"link '{member.name}' points to an absolute path")
        base = os.path.dirname(target) if member.issym() else dest_real
        linked = os.path.realpath(os.path.join(base, member.linkname))
        if os.path.commonpath([linked, dest_real]) != dest_real:
            raise FilterError(f"link '{member.name}' points outside the destination")
    changed = copy.copy(member)
    changed.name = name
    mode = member.mode
    if mode is not None:
        mode &= 0o755
        if member.isreg() or member.islnk():
            if not mode & 0o100:
                mode &= ~0o111  # no executable bits unless the owner's
            mode |= stat.S_IRUSR | stat.S_IWUSR
        changed.mode = mode
    changed.uid = changed.gid = 0
    changed.uname = changed.gname = ""
    return changed
