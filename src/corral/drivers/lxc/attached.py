"""A container's processes that a CRIU checkpoint would leave out: those outside its init's
process tree.

CRIU dumps the tree below the container's init. What ``corral exec`` (``lxc-attach``) runs is
in the container's cgroup and namespaces but a child of ``lxc-attach``, on the host: CRIU's
dump succeeds without it, and it ends with the source (a migration) or is missing after the
revert (a memory snapshot), with nothing said. So before a checkpoint the container's
cgroup members (``StateReader.members``: the group itself and LXC's ``inner``, where a
restored container's tasks and an exec's are) are set against init's descendants, found by
following each member's parent (``/proc/PID/stat``) up to init or out of the container: file
reads only, no process started. Those not below init are named (pid, command) in the
refusal.
"""

from __future__ import annotations

from pathlib import Path

from corral.domain.instance import InstanceSpec
from corral.drivers.lxc.config import cgroup_dirs
from corral.drivers.lxc.driver import LxcDriver, lxc_name
from corral.drivers.lxc.state import StateReader, init_pid
from corral.host import procfs

COMMAND_CHARS = 60


def outside_tree(pids: list[int], init: int, proc: Path = procfs.PROC) -> list[int]:
    """The members of ``pids`` (a container's processes) that are not ``init`` nor below it;
    one that ended while this looked (no ``stat``) is left out."""
    members = set(pids)
    parents = {pid: procfs.parent_of(pid, proc) for pid in members}
    below: dict[int, bool] = {init: True}

    def under_init(pid: int) -> bool:
        chain: list[int] = []
        verdict = False
        while True:
            if pid in below:
                verdict = below[pid]
                break
            parent = parents.get(pid)
            if pid not in members or parent is None or pid in chain:
                break  # left the container, ended, or a loop (pids reused meanwhile)
            chain.append(pid)
            pid = parent
        for seen in chain:
            below[seen] = verdict
        return verdict

    return sorted(pid for pid in members
                  if parents[pid] is not None and not under_init(pid))


def command(pid: int, proc: Path = procfs.PROC) -> str:
    """``pid``'s command line (shortened), else its name; "?" when it is gone."""
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
        text = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace").strip()
        if not text:
            text = (proc / str(pid) / "comm").read_text().strip()
    except OSError:
        return "?"
    return text if len(text) <= COMMAND_CHARS else text[:COMMAND_CHARS - 1] + "…"


def inner_pid(pid: int, proc: Path = procfs.PROC) -> int:
    """``pid`` as the container sees it (its innermost pid namespace: ``NSpid``'s last
    field), else ``pid`` itself."""
    try:
        text = (proc / str(pid) / "status").read_text()
    except OSError:
        return pid
    for line in text.splitlines():
        if line.startswith("NSpid:"):
            fields = line.split()
            return int(fields[-1]) if len(fields) > 1 and fields[-1].isdigit() else pid
    return pid


def attached(driver: LxcDriver, spec: InstanceSpec) -> list[tuple[int, str]]:
    """The running ``spec``'s processes outside its init's tree, as (its pid inside the
    container, command)."""
    pids = StateReader(driver._cgroups()).members(cgroup_dirs(lxc_name(spec))["container"])
    init = init_pid(pids) if pids else None
    if not pids or init is None:
        return []
    return [(inner_pid(pid), command(pid)) for pid in outside_tree(pids, init)]


def attached_refusal(driver: LxcDriver, spec: InstanceSpec) -> str | None:
    """Why a checkpoint of ``spec`` now would lose processes (None: it would not)."""
    found = attached(driver, spec)
    if not found:
        return None
    named = ", ".join(f"pid {pid} ({cmd})" for pid, cmd in found)
    return (f"{'a process' if len(found) == 1 else 'processes'} run from outside by an exec "
            f"(corral exec / lxc-attach) would not be in the checkpoint: {named}; let "
            f"{'it' if len(found) == 1 else 'them'} end or end "
            f"{'it' if len(found) == 1 else 'them'} (`corral exec {spec.name} -- kill "
            f"{' '.join(str(pid) for pid, _ in found)}`)")
