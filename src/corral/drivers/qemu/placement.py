"""Putting a starting QEMU into its cgroup while it initialises, not after.

Moving a process between cgroups takes the kernel's cgroup threadgroup lock for writing;
the first writer after a quiet spell waits for an RCU grace period (10-15 ms here) before it
gets it. Done after QEMU had daemonized, that wait sat on every start's critical path, and
the memory QEMU touched before it was charged to the daemon's cgroup. So, while the
launching ``qemu`` process runs (``host.run.run_while``):

1. the group is made with its limits (``prepare``);
2. the launcher itself is moved into it (``move(launcher.pid)``), a few ms after its exec:
   the grace period passes while QEMU loads its libraries and parses its options, and the
   daemon QEMU forks later is born in the group -- nothing of its own start waits;
3. once the pidfile names the daemon, ``move`` puts it in whichever hierarchy it is not in
   yet (none, unless it forked before step 2 ended; the lock is warm then, no wait).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from corral.domain.errors import HostFailure

POLL_SECONDS = 0.001


class Launcher(Protocol):
    """The starting process (``host.spawn.Spawned``; a ``subprocess.Popen`` also fits)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...


def place_while_starting(
    launcher: Launcher, pidfile: Path, is_ours: Callable[[int], bool],
    prepare: Callable[[], None], move: Callable[[int], None],
) -> int | None:
    """``prepare()`` the group, ``move`` the launcher into it, then ``move(pid)`` QEMU's
    daemon once its pidfile names it (``move`` skips hierarchies a process is already in);
    the daemon's pid, or None if ``launcher`` ended first without one (QEMU failed; the
    caller finds out from the exit status)."""
    prepare()
    try:
        move(launcher.pid)
    except HostFailure:
        if launcher.poll() is None:
            raise
        # it had exited already: its daemon (if any) is moved below
    while True:
        exited = launcher.poll() is not None
        pid = _read_pid(pidfile)
        if pid is not None and is_ours(pid):
            move(pid)
            return pid
        if exited:
            return None
        time.sleep(POLL_SECONDS)


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
