"""A cgroup's freezer, written directly: freeze (and wait, reading every millisecond) and
thaw one group, v1 (``freezer.state``) or v2 (``cgroup.freeze``/``cgroup.events``).

Why not ``lxc-freeze``/``lxc-unfreeze``: a move's stopping ``criu dump`` needs the group
frozen before CRIU starts (CRIU's own freeze reads the state every 100 ms, and on cgroup v1
the read right after the write nearly always says FREEZING, so every dump slept ~100 ms in
the downtime: drivers/lxc/checkpoint.py), and a group CRIU restored frozen is one
``lxc-unfreeze`` reports thawed while it stays FROZEN.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

POLL = 0.001
WAIT = 2.0  # then whoever freezes next (CRIU's own loop) goes on with it (it is FREEZING)


def freeze(group: Path, wait: float = WAIT) -> bool:
    """Freeze ``group`` and wait until it is frozen or ``wait`` passed; whether this froze
    it (False: it was frozen already, e.g. a suspended container, or there is no such
    group)."""
    v1, v2 = group / "freezer.state", group / "cgroup.freeze"
    try:
        if v1.exists():
            if v1.read_text().strip() != "THAWED":
                return False
            v1.write_text("FROZEN")
        elif v2.exists():
            if v2.read_text().strip() == "1":
                return False
            v2.write_text("1")
        else:
            return False
    except OSError:
        return False
    deadline = time.monotonic() + wait
    with contextlib.suppress(OSError):
        while not _frozen(group) and time.monotonic() < deadline:
            time.sleep(POLL)
    return True


def _frozen(group: Path) -> bool:
    v1 = group / "freezer.state"
    if v1.exists():
        return v1.read_text().strip() == "FROZEN"
    return "frozen 1" in (group / "cgroup.events").read_text()


def thaw(group: Path) -> None:
    """Thaw ``group`` (best effort: a group gone with its container needs nothing)."""
    with contextlib.suppress(OSError):
        if (group / "freezer.state").exists():
            (group / "freezer.state").write_text("THAWED")
        elif (group / "cgroup.freeze").exists():
            (group / "cgroup.freeze").write_text("0")
