"""Putting a starting QEMU into its cgroup while it initialises, not after.

Moving a process between cgroups takes the kernel's cgroup threadgroup lock for writing,
which waits for an RCU grace period: 10-15 ms here, once per move. Done after QEMU had
daemonized, that wait sat on every start's critical path, and the memory QEMU touched
before it was charged to the daemon's cgroup. Instead, while the launching ``qemu`` process
runs (``host.run.run_while``), the group is made with its limits and QEMU's daemonized
process is moved as soon as it has written its pidfile (early in its initialisation): the
wait overlaps QEMU's own start-up, and nearly all of its memory is charged to the VM's
group from the beginning.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

POLL_SECONDS = 0.001


def place_while_starting(
    launcher: subprocess.Popen[bytes], pidfile: Path, is_ours: Callable[[int], bool],
    prepare: Callable[[], None], move: Callable[[int], None],
) -> int | None:
    """``prepare()`` the group, then ``move(pid)`` QEMU's process once its pidfile names
    it; the pid moved, or None if ``launcher`` ended first without one (QEMU failed; the
    caller finds out from the exit status)."""
    prepare()
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
