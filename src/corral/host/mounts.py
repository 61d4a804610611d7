"""Loop-mounting disk images on the host (privileged containers' roots) and undoing it."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from corral.host.loopmount import MS_NODEV, mount_loop
from corral.host.run import require_tool, run

MOUNTINFO = Path("/proc/self/mountinfo")


def _unescape(path: str) -> str:
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(code, char)
    return path


def mount_points(mountinfo_text: str) -> list[Path]:
    """Mount points listed in the text of /proc/<pid>/mountinfo (field 5)."""
    points: list[Path] = []
    for line in mountinfo_text.splitlines():
        fields = line.split()
        if len(fields) > 4:
            points.append(Path(_unescape(fields[4])))
    return points


def is_mounted(target: Path) -> bool:
    """Whether something is mounted at ``target`` (compared as text: building a Path for
    every line of mountinfo cost ~0.3 ms on each start)."""
    wanted = str(target.resolve())
    for line in MOUNTINFO.read_text().splitlines():
        fields = line.split(" ", 5)
        if len(fields) > 4 and (fields[4] == wanted or
                                ("\\" in fields[4] and _unescape(fields[4]) == wanted)):
            return True
    return False


def _own_filesystem(target: Path) -> bool:
    """Whether another file system than its parent directory's is mounted at ``target``:
    what an image's mount looks like, found with two stat calls (``is_mounted`` reads all
    of mountinfo: ~0.17 ms of each container start here)."""
    return os.stat(target).st_dev != os.stat(target.parent).st_dev


def mount_image(image: Path, target: Path) -> None:
    """Mount the ext4 ``image`` at ``target``, nodev, through a loop device that goes away
    on umount (autoclear; ``host/loopmount.py`` does what ``mount -o loop`` did in a third
    of its time)."""
    target.mkdir(parents=True, exist_ok=True)
    if _own_filesystem(target):
        return
    mount_loop(image, target, "ext4", MS_NODEV)


def unmount(target: Path) -> None:
    """Unmount ``target`` if something is mounted there (detaching its loop device)."""
    if not is_mounted(target):
        return
    umount = require_tool("umount", "mount")
    run([umount, str(target)])


MS_RDONLY, MS_NOSUID, MS_NOEXEC, MS_REMOUNT = 1, 2, 8, 32
_KEPT = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
         (os.ST_NOATIME, 1024), (os.ST_NODIRATIME, 2048), (os.ST_RELATIME, 1 << 21))
"""statvfs flag -> the mount(2) flag a remount must pass again to keep it on the mount."""
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_libc.mount.restype = ctypes.c_int


def remount_readonly(target: Path) -> bool:
    """Make the file system mounted at ``target`` read-only, its superblock (so every mount
    of it, a container's too), keeping the mount's other flags: the kernel syncs it first
    (ext4: data written, the journal flushed and emptied, the superblock marked clean) and
    refuses (OSError EBUSY) while a file on it is open for writing or an unlinked file is
    still open; once done, nothing writes to its device again, its unmount included. False
    when nothing is mounted at ``target`` (EINVAL: not a mount's root)."""
    kept = os.statvfs(target).f_flag
    flags = MS_REMOUNT | MS_RDONLY
    for st_flag, ms_flag in _KEPT:
        if kept & st_flag:
            flags |= ms_flag
    if _libc.mount(None, os.fsencode(target), None, flags, None) == 0:
        return True
    code = ctypes.get_errno()
    if code == errno.EINVAL:
        return False
    raise OSError(code, f"cannot make {target} read-only: {os.strerror(code)}")
