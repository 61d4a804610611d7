"""What limits act on a container's init, read from the cgroups it is really in.

A limit written to a group no task of the container is under limits nothing: so the groups
are found from ``/proc/<init>/cgroup`` (the init's pid from LXC's monitor), and a limit is
the smallest one set on any group from the init's own up to the hierarchy's root (a cgroup
limit holds for everything below it). cgroup v1 (each controller its hierarchy) and v2 (one
hierarchy) alike.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
NO_LIMIT = 1 << 62  # larger than any limit a test sets; v1 "unlimited" is 0x7ffff…f000


@dataclass(frozen=True)
class InForce:
    memory: int
    """Bytes (NO_LIMIT: none)."""
    cpu_percent: float | None
    """The CFS cap in percent of one CPU (None: none)."""


def init_pid(lxcpath: Path, name: str, netns: str | None = None) -> int:
    """The host pid of container ``name``'s init, as its LXC monitor says (the monitor's
    socket is abstract: asked from the daemon's network namespace)."""
    argv = ["lxc-info", "-P", str(lxcpath), "-n", name, "-p", "-H"]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    said = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30)
    return int(said.stdout.strip())


def _groups(pid: int) -> dict[str, Path]:
    """Controller ("" for v2) -> the directory of the group ``pid`` is in."""
    found: dict[str, Path] = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _n, controllers, path = line.split(":", 2)
        if not controllers:
            found[""] = _v2_root() / path.lstrip("/")
        for controller in controllers.split(","):
            if controller and (CGROUP / controller).is_dir():
                found[controller] = CGROUP / controller / path.lstrip("/")
    return found


def _v2_root() -> Path:
    unified = CGROUP / "unified"
    return unified if unified.is_dir() else CGROUP


def _up(group: Path, root: Path) -> list[Path]:
    """``group`` and its parents up to (and with) ``root``."""
    chain = [group]
    while chain[-1] != root and chain[-1] != chain[-1].parent:
        chain.append(chain[-1].parent)
    return chain


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def in_force(pid: int) -> InForce:
    groups = _groups(pid)
    memory, cpu = NO_LIMIT, None
    if "memory" in groups:
        for group in _up(groups["memory"], CGROUP / "memory"):
            value = _read(group / "memory.limit_in_bytes")
            if value is not None:
                memory = min(memory, int(value))
    elif "" in groups:
        for group in _up(groups[""], _v2_root()):
            value = _read(group / "memory.max")
            if value is not None and value != "max":
                memory = min(memory, int(value))
    caps: list[float] = []
    if "cpu" in groups:
        for group in _up(groups["cpu"], CGROUP / "cpu"):
            quota, period = _read(group / "cpu.cfs_quota_us"), _read(group / "cpu.cfs_period_us")
            if quota is not None and period is not None and int(quota) > 0:
                caps.append(int(quota) * 100 / int(period))
    elif "" in groups:
        for group in _up(groups[""], _v2_root()):
            value = _read(group / "cpu.max")
            if value is not None and not value.startswith("max"):
                quota_s, period_s = value.split()
                caps.append(int(quota_s) * 100 / int(period_s))
    if caps:
        cpu = min(caps)
    return InForce(memory, cpu)
