"""Mounts inside another process's mount namespace (a running container's), without running
any binary of the container: a short Python child ``setns``es into the namespace (which also
makes its root the namespace's) and calls ``umount2``/``mount`` through libc.

Used around a CRIU dump of a container: its console is a bind mount of a pty whose master
LXC's monitor holds, which LXC 5.0's restore cannot give back (drivers/lxc/checkpoint.py).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from corral.domain.errors import HostFailure
from corral.host.run import run

_SCRIPT = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open(f"/proc/{sys.argv[1]}/ns/mnt", os.O_RDONLY)
if libc.setns(fd, 0x00020000) != 0:  # CLONE_NEWNS
    sys.exit(f"setns: {os.strerror(ctypes.get_errno())}")
verb, args = sys.argv[2], sys.argv[3:]
if verb == "umount":
    for path in args:
        if libc.umount2(path.encode(), 2) != 0:  # MNT_DETACH
            sys.exit(f"umount {path}: {os.strerror(ctypes.get_errno())}")
else:
    source = args[0]
    for path in args[1:]:
        if libc.mount(source.encode(), path.encode(), None, 4096, None) != 0:  # MS_BIND
            sys.exit(f"bind {source} {path}: {os.strerror(ctypes.get_errno())}")
"""


def _run(pid: int, verb: str, args: Sequence[str]) -> None:
    proc = run([sys.executable, "-c", _SCRIPT, str(pid), verb, *args], check=False, timeout=30)
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        raise HostFailure(f"mount namespace of process {pid}: {said}")


def unmount_in(pid: int, paths: Sequence[str]) -> None:
    """Detach the mounts at ``paths`` (as the process sees them)."""
    _run(pid, "umount", paths)


def bind_in(pid: int, source: str, targets: Sequence[str]) -> None:
    """Bind ``source`` onto each of ``targets`` (all as the process sees them)."""
    _run(pid, "bind", [source, *targets])


def mount_roots(pid: int, paths: Sequence[str]) -> dict[str, str]:
    """For those of ``paths`` that are mount points in the process's namespace: the root of
    the mount within its filesystem (``/0`` for a bind of pty 0 of a devpts)."""
    found: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] in paths:
            found[fields[4]] = fields[3]
    return found
