"""A direct ``criu dump``'s group frozen by Corral first, its state read every millisecond.

CRIU freezes a thawed group itself, then reads its state every 100 ms (``freeze_processes``,
``step_ms``): on cgroup v1 the read right after the write nearly always says FREEZING, so
every stopping dump slept ~100 ms inside a move's downtime (its log: "Set 1 is criu one" ->
"Seized task" 100 ms later; 177 ms dumps against 77-83 ms for the same container at load
~2). A group it finds FROZEN (or FREEZING) it takes as it is, and it then leaves the thawing
to whoever froze it: ``thaw`` after a failed dump, so the container runs on unchanged.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

POLL = 0.001
WAIT = 2.0  # then CRIU's own loop goes on with it (the group is FREEZING)


def target(argv: list[str]) -> Path | None:
    """The freezer group a ``criu dump`` command line names (``--freeze-cgroup``)."""
    if "--freeze-cgroup" not in argv[:-1]:
        return None
    return Path(argv[argv.index("--freeze-cgroup") + 1])


def freeze(group: Path, wait: float = WAIT) -> bool:
    """Freeze ``group`` (v1: ``freezer.state``; v2: ``cgroup.freeze``) and wait until it is
    frozen or ``wait`` passed; whether this froze it (False: it was frozen already, e.g. a
    suspended container, or there is no such group)."""
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
    """Undo ``freeze`` (best effort: a group gone with its container needs nothing)."""
    with contextlib.suppress(OSError):
        if (group / "freezer.state").exists():
            (group / "freezer.state").write_text("THAWED")
        elif (group / "cgroup.freeze").exists():
            (group / "cgroup.freeze").write_text("0")
