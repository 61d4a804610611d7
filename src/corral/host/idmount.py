"""Idmapped mounts made by Corral itself (``open_tree`` + ``mount_setattr`` + ``move_mount``).

LXC makes an unprivileged container's idmapped root at start (``idmap=container``), but its
CRIU restore binds ``lxc.rootfs.path`` plainly. A bind of an idmapped mount keeps its idmap,
so the restore is pointed at an idmapped mount made here: a clone of the host's loop mount of
the root image, with the container's id map attached (Linux >= 5.12, and a file system that
supports it: ext4, btrfs, xfs). A user namespace carrying the map is needed as a file
descriptor: a short-lived ``unshare -U`` child provides it (its maps written from here), once
per id map and daemon (the descriptor is kept).

``probe`` answers whether this works for a given directory, by doing it once (cached per file
system type), with the kernel's own words when it does not.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import threading
import time
from pathlib import Path

from corral.domain.errors import HostFailure
from corral.host.idmap import IdMap

_SYS_OPEN_TREE = 428  # the same number on every architecture (unified syscall table)
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
_OPEN_TREE_CLONE = 1
_AT_EMPTY_PATH = 0x1000
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_IDMAP = 0x00100000
_USERNS_WAIT = 5.0

_libc = ctypes.CDLL(None, use_errno=True)
_probed: dict[str, str | None] = {}


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _syscall(number: int, *args: object, what: str) -> int:
    result = int(_libc.syscall(number, *args))
    if result < 0:
        err = ctypes.get_errno()
        raise HostFailure(f"{what}: {os.strerror(err)}")
    return result


def userns_fd(idmap: IdMap) -> int:
    """A file descriptor of a fresh user namespace mapping 0..count-1 onto ``idmap``."""
    child = subprocess.Popen(["unshare", "--user", "sleep", "60"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        ours = os.readlink("/proc/self/ns/user")
        deadline = time.monotonic() + _USERNS_WAIT
        while True:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{child.pid}/ns/user") != ours:
                    break
            if child.poll() is not None or time.monotonic() > deadline:
                said = child.stderr.read().decode(errors="replace").strip() \
                    if child.stderr else ""
                raise HostFailure(f"no user namespace for an idmapped mount: {said}")
            time.sleep(0.001)
        Path(f"/proc/{child.pid}/uid_map").write_text(
            f"0 {idmap.uid.start} {idmap.uid.count}\n")
        Path(f"/proc/{child.pid}/setgroups").write_text("deny\n")
        Path(f"/proc/{child.pid}/gid_map").write_text(
            f"0 {idmap.gid.start} {idmap.gid.count}\n")
        return os.open(f"/proc/{child.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        child.kill()
        child.wait()
        if child.stderr:
            child.stderr.close()


_namespaces: dict[IdMap, int] = {}
_namespaces_lock = threading.Lock()


def _kept_userns(idmap: IdMap) -> int:
    """A user namespace for ``idmap``, made once per process and kept open (a namespace
    lives as long as a descriptor of it): no ``unshare`` child in a restore's downtime."""
    with _namespaces_lock:
        if idmap not in _namespaces:
            _namespaces[idmap] = userns_fd(idmap)
        return _namespaces[idmap]


def mount_idmapped(source: Path, target: Path, idmap: IdMap) -> None:
    """Make ``target`` a mount of ``source``'s tree as seen through ``idmap`` (``source``
    stays as it was). ``target`` is created if missing."""
    target.mkdir(parents=True, exist_ok=True)
    ns = _kept_userns(idmap)
    tree = -1
    try:
        tree = _syscall(_SYS_OPEN_TREE, _AT_FDCWD, str(source).encode(),
                        _OPEN_TREE_CLONE | os.O_CLOEXEC, what=f"open_tree {source}")
        attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, ns)
        _syscall(_SYS_MOUNT_SETATTR, tree, b"", _AT_EMPTY_PATH, ctypes.byref(attr),
                 ctypes.sizeof(attr), what=f"mount_setattr(MOUNT_ATTR_IDMAP) of {source}")
        _syscall(_SYS_MOVE_MOUNT, tree, b"", _AT_FDCWD, str(target).encode(),
                 _MOVE_MOUNT_F_EMPTY_PATH, what=f"move_mount to {target}")
    finally:
        if tree >= 0:
            os.close(tree)


def fs_type(path: Path) -> str:
    """The file system type of the mount holding ``path`` (from /proc/self/mountinfo)."""
    best, kind = "", "?"
    real = os.path.realpath(path)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point = fields[4].replace("\\040", " ")
        within = real == point or real.startswith(point.rstrip("/") + "/")
        if within and len(point) >= len(best) and "-" in fields:
            best, kind = point, fields[fields.index("-") + 1]
    return kind


def probe(mounted: Path, idmap: IdMap) -> str | None:
    """Why an idmapped mount of the mounted file system at ``mounted`` cannot be made here
    (None: it can), tried once per file system type: the kernel's answer."""
    kind = fs_type(mounted)
    if kind in _probed:
        return _probed[kind]
    target = mounted.parent / f".{mounted.name}.idmap-probe"
    why: str | None = None
    try:
        mount_idmapped(mounted, target, idmap)
        owner = os.stat(target).st_uid
        if owner != os.stat(mounted).st_uid + idmap.uid.start:
            why = f"an idmapped mount on {kind} did not shift ids (uid {owner})"
    except HostFailure as exc:
        why = f"idmapped mounts on {kind} do not work here: {exc}"
    finally:
        _umount(target)
        with contextlib.suppress(OSError):
            target.rmdir()
    _probed[kind] = why
    return why


def cached() -> str | None:
    """The verdict of an earlier ``probe`` on ext4 (a container's root image), if any."""
    return _probed.get("ext4")


def _umount(target: Path) -> None:
    if os.path.ismount(target) and _libc.umount2(str(target).encode(), 2) != 0:  # MNT_DETACH
        raise HostFailure(f"umount {target}: {os.strerror(ctypes.get_errno())}")
