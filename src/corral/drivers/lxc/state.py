"""A container's runtime state read from its cgroup and /proc, without ``lxc-info``.

``lxc-info`` is a process per container; ``list`` of a thousand containers took 2.9 s that
way. Every container's cgroup sits at a path Corral chose (``config.cgroup_dirs``), so its
state is a few file reads: the group holds processes → running (its freezer says frozen →
suspended); no group or an empty one → stopped; no config → missing. A container stopped
behind Corral's back (``lxc-stop`` by hand, its init killed, the guest powering off) loses
its group the moment LXC's monitor cleans up, so the next read shows it.
"""

from __future__ import annotations

import os
from pathlib import Path

from corral.drivers.base import RuntimeState, RuntimeStatus
from corral.drivers.lxc.config import cgroup_dirs
from corral.host import cgroupfs, procfs
from corral.host.cgroups import CgroupLayout


def _all_members(layout: CgroupLayout, rel: str) -> list[int] | None:
    """The pids of the group; when it holds none itself (a systemd guest moves its init to
    a child group), those of its child groups."""
    pids = cgroupfs.members(layout, rel)
    if pids is None or pids:
        return pids
    root = cgroupfs.hierarchy(layout, "pids") or cgroupfs.hierarchy(layout, "memory")
    if root is None:
        return pids
    found: list[int] = []
    for path, _dirs, files in os.walk(root / rel):
        if "cgroup.procs" in files and path != str(root / rel):
            found += cgroupfs.members(layout, os.path.relpath(path, root)) or []
    return found


def init_pid(pids: list[int]) -> int | None:
    """The container's init: the oldest member whose parent is outside the container (the
    parent of init is LXC's monitor; processes ``lxc-attach`` started come later)."""
    inside = set(pids)
    for pid in sorted(pids):
        parent = procfs.parent_of(pid)
        if parent is not None and parent not in inside:
            return pid
    return None


def read_status(container_dir: Path, lxc_name: str, layout: CgroupLayout) -> RuntimeStatus:
    """The container's state as ``lxc-info -s -p -i`` would say it, from files only."""
    if not (container_dir / "config").is_file():
        return RuntimeStatus(RuntimeState.MISSING)
    rel = cgroup_dirs(lxc_name)["container"]
    pids = _all_members(layout, rel)
    pid = init_pid(pids) if pids else None
    if pid is None:
        return RuntimeStatus(RuntimeState.STOPPED, details={"lxc_state": "STOPPED"})
    if cgroupfs.frozen(layout, rel):
        state, raw = RuntimeState.SUSPENDED, "FROZEN"
    else:
        state, raw = RuntimeState.RUNNING, "RUNNING"
    return RuntimeStatus(state, pid=pid, addresses=tuple(procfs.netns_addresses(pid)),
                         details={"lxc_state": raw})
