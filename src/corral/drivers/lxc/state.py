"""A container's runtime state read from its cgroup and /proc, without ``lxc-info``.

``lxc-info`` is a process per container; ``list`` of a thousand containers took 2.9 s that
way. Every container's cgroup sits at a path Corral chose (``config.cgroup_dirs``, its
processes one level down in ``INNER``), so its state is a few file reads: the group holds
processes → running (its freezer says frozen → suspended); no group or an empty one →
stopped; no config → missing. A container stopped behind Corral's back (``lxc-stop`` by
hand, its init killed, the guest powering off) loses its processes at once and its group
when LXC's monitor cleans up, so the next read shows it.

Plain ``os`` calls on strings, not pathlib: this runs for every container on every ``list``.
"""

from __future__ import annotations

import os
from pathlib import Path

from corral.drivers.base import RuntimeState, RuntimeStatus
from corral.drivers.lxc.config import INNER, cgroup_dirs
from corral.host import cgroupfs, procfs
from corral.host.cgroups import CgroupLayout, CgroupVersion
from corral.network.nicfile import NICS_FILE


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def _pids(path: str) -> list[int] | None:
    text = _read(path)
    return None if text is None else [int(word) for word in text.split()]


class StateReader:
    """Reads the state of many containers; the cgroup layout is looked at once."""

    def __init__(self, layout: CgroupLayout) -> None:
        members = next((r for c in ("pids", "memory", "cpu")
                        if (r := cgroupfs.hierarchy(layout, c)) is not None), layout.v2_mount)
        self.members_root = None if members is None else str(members)
        freezer = layout.v1.get("freezer") \
            if layout.controller_version("freezer") == CgroupVersion.V1 else None
        self.freezer_root = None if freezer is None else str(freezer)
        self.v2_root = None if layout.v2_mount is None else str(layout.v2_mount)

    def members(self, rel: str) -> list[int] | None:
        """The container's processes: those in the group itself and in ``INNER`` (where LXC
        runs them), else below it; None when the group does not exist. Both, not the first
        one found: a container CRIU restored runs in the group itself while what
        ``lxc-attach`` starts in it goes to ``INNER`` (reading ``INNER`` alone took a
        ``corral exec`` for the whole container, its init included)."""
        if self.members_root is None:
            return None
        group = f"{self.members_root}/{rel}"
        inner = _pids(f"{group}/{INNER}/cgroup.procs")
        pids = _pids(f"{group}/cgroup.procs")
        if pids is None:
            return inner
        if pids or inner:
            return pids + (inner or [])
        found: list[int] = []  # a guest that made its own groups (systemd: init.scope)
        for path, _dirs, files in os.walk(group):
            if "cgroup.procs" in files:
                found += _pids(f"{path}/cgroup.procs") or []
        return found

    def frozen(self, rel: str) -> bool:
        if self.freezer_root is not None:
            state = _read(f"{self.freezer_root}/{rel}/freezer.state")
            if state is not None:
                return state.strip() in ("FROZEN", "FREEZING")
        if self.v2_root is not None:
            return (_read(f"{self.v2_root}/{rel}/cgroup.freeze") or "").strip() == "1"
        return False

    def status(self, container_dir: Path, lxc_name: str, instance_dir: Path
               ) -> RuntimeStatus:
        """The container's state as ``lxc-info -s -p -i`` would say it, from files only;
        ``instance_dir``: the instance's directory (its NIC file says whether to look for
        addresses at all)."""
        if not os.path.isfile(f"{container_dir}/config"):
            return RuntimeStatus(RuntimeState.MISSING)
        dirs = cgroup_dirs(lxc_name)
        rel = dirs["container"]
        pids = self.members(rel)
        pid = init_pid(pids) if pids else None
        if pid is None:
            details = {"lxc_state": "STOPPED"}
            if pids is not None and not self.members(dirs["monitor"]):
                # LXC's monitor removes the container's group once its init is gone; an
                # empty group with no monitor left means the monitor itself died (its
                # death takes the container's init with it: LXC sets it as the parent-death
                # signal). The monitor is not Corral's child: its signal cannot be read.
                details["ended"] = ("the container's LXC monitor ended without stopping it "
                                    "(killed by a signal or crashed)")
            return RuntimeStatus(RuntimeState.STOPPED, details=details)
        if self.frozen(rel):
            state, raw = RuntimeState.SUSPENDED, "FROZEN"
        else:
            state, raw = RuntimeState.RUNNING, "RUNNING"
        addresses: tuple[str, ...] = ()
        if os.path.exists(f"{instance_dir}/{NICS_FILE}"):
            addresses = tuple(procfs.netns_addresses(pid))
        return RuntimeStatus(state, pid=pid, addresses=addresses, details={"lxc_state": raw})


def init_pid(pids: list[int], proc: Path = procfs.PROC) -> int | None:
    """The container's init: the oldest member whose parent is outside the container (the
    parent of init is LXC's monitor; processes ``lxc-attach`` started come later). Oldest
    by start time, not by pid: once the host's pids wrap (pid_max), an attached process can
    have a lower pid than init (a restored init has a new, late pid), and taking it for
    init failed every CRIU dump of the container while it ran (its console not found)."""
    if len(pids) == 1:
        return pids[0]
    inside = set(pids)
    outside = [pid for pid in pids
               if (parent := procfs.parent_of(pid, proc)) is not None and parent not in inside]
    if len(outside) <= 1:  # the common case (nothing attached): no more reads
        return outside[0] if outside else None
    started = {pid: procfs.start_time(pid, proc) for pid in outside}
    alive = [pid for pid in outside if started[pid] is not None]
    return min(alive, key=lambda pid: (started[pid], pid)) if alive else None
