"""Writing and reading cgroup files: every cgroup change Corral makes goes through here.

Paths are relative to each hierarchy's root (e.g. ``corral/vm/105``); the layout says where
each controller lives (v1 mount or the cgroup2 mount), so v1, v2 and hybrid hosts all work.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from corral.domain.errors import HostFailure
from corral.host.cgroups import CgroupLayout, CgroupVersion

log = logging.getLogger("corral.host")
INHERIT = "<inherit>"
ROOT_ENV = "CORRAL_CGROUP_ROOT"


def corral_root() -> str:
    """The cgroup directory every guest of this daemon sits under (``corral`` by default).

    One daemon per host is the rule; tests and labs that run several daemons on one host give
    each its own root (``CORRAL_CGROUP_ROOT``) so their guests' cgroups never collide.
    """
    return os.environ.get(ROOT_ENV, "corral").strip("/") or "corral"


def hierarchy(layout: CgroupLayout, controller: str) -> Path | None:
    """The mount point holding ``controller`` on this host, or None if it has none."""
    where = layout.controller_version(controller)
    if where == CgroupVersion.V1:
        return layout.v1[controller]
    if where == CgroupVersion.V2:
        return layout.v2_mount
    return None


def _roots(layout: CgroupLayout, controllers: Iterable[str]) -> dict[Path, list[str]]:
    found: dict[Path, list[str]] = {}
    for controller in controllers:
        root = hierarchy(layout, controller)
        if root is not None:
            found.setdefault(root, []).append(controller)
    return found


def _write(path: Path, value: str) -> None:
    log.debug("cgroup write %s = %s", path, value)
    try:
        with open(path, "w") as handle:
            handle.write(value)
    except OSError as exc:
        why = errno.errorcode.get(exc.errno or 0, "") if exc.errno else ""
        raise HostFailure(f"cannot write '{value}' to {path}: {exc.strerror or exc} {why}"
                          .strip()) from exc


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def ensure_group(layout: CgroupLayout, controllers: Iterable[str], rel: str) -> None:
    """Create ``rel`` in every hierarchy holding one of ``controllers``.

    v1 cpuset groups start with no CPUs and no memory nodes: each new level copies its
    parent's. On v2 the controllers are enabled in ``cgroup.subtree_control`` down the path.
    """
    parts = [p for p in rel.split("/") if p]
    for root, names in _roots(layout, controllers).items():
        current = root
        v2 = _is_v2(layout, root, names)
        for part in parts:
            if v2:
                for name in names:
                    if name in layout.v2_controllers:
                        with contextlib.suppress(HostFailure):
                            _write(current / "cgroup.subtree_control", f"+{name}")
            child = current / part
            if not child.is_dir():
                try:
                    child.mkdir()
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise HostFailure(f"cannot create cgroup {child}: {exc}") from exc
            if "cpuset" in names and not v2:
                for file in ("cpuset.cpus", "cpuset.mems"):
                    if not (_read(child / file) or "").strip():
                        _write(child / file, (_read(current / file) or "").strip())
            current = child


def apply(layout: CgroupLayout, rel: str, controller: str, file: str, value: str) -> None:
    """Write ``value`` to ``file`` of group ``rel`` in the hierarchy holding ``controller``."""
    root = hierarchy(layout, controller)
    if root is None:
        raise HostFailure(f"this host has no '{controller}' cgroup controller")
    group = root / rel
    v1 = layout.controller_version(controller) == CgroupVersion.V1
    if value == INHERIT:
        parent_file = "cpuset.cpus" if v1 else "cpuset.cpus.effective"
        value = (_read(group.parent / parent_file) or "").strip()
    if v1 and file == "cpuset.cpus":
        _write_cpuset_tree(group, value)
    elif v1 and file.startswith("blkio.throttle."):
        # v1 blk-throttle is not hierarchical: a limit binds only tasks in that very group,
        # and LXC runs the container one level down (inner), so the whole subtree gets it.
        for cgroup in _subtree(group):
            _write(cgroup / file, value)
    else:
        _write(group / file, value)


def _subtree(group: Path) -> list[Path]:
    """``group`` and every cgroup below it, parents first."""
    found = [group]
    for current in found:  # scandir's entry types: no stat of each of a group's files
        with os.scandir(current) as entries:
            found += sorted(current / e.name for e in entries if e.is_dir(follow_symlinks=False))
    return found


def _write_cpuset_tree(group: Path, cpus: str) -> None:
    """v1 cpusets must stay nested (a parent cannot drop a CPU a child uses): first widen the
    group and its descendants to old + new top-down, then narrow them to ``cpus`` bottom-up."""
    tree = _subtree(group)
    old = (_read(group / "cpuset.cpus") or "").strip()
    union = f"{old},{cpus}" if old and cpus else (old or cpus)
    for cgroup in tree:
        _write(cgroup / "cpuset.cpus", union)
    for cgroup in reversed(tree):
        _write(cgroup / "cpuset.cpus", cpus)


def move_process(layout: CgroupLayout, controllers: Iterable[str], rel: str, pid: int) -> None:
    """Put process ``pid`` (all its threads) into ``rel`` in each hierarchy.

    A hierarchy where ``/proc/<pid>/cgroup`` already shows it in ``rel`` is skipped: the
    write would still take the kernel's cgroup threadgroup lock, whose first taker after a
    quiet spell waits for an RCU grace period (10-15 ms measured here)."""
    now = groups_of(pid)
    for root, names in _roots(layout, controllers).items():
        key = _V2_KEY if _is_v2(layout, root, names) else names[0]
        if now.get(key) != "/" + rel:
            _write(root / rel / "cgroup.procs", str(pid))


_V2_KEY = ""
"""``groups_of``'s key for the cgroup2 hierarchy (its line in /proc/<pid>/cgroup: ``0::/path``)."""


def _is_v2(layout: CgroupLayout, root: Path, names: list[str]) -> bool:
    return root == layout.v2_mount and layout.controller_version(names[0]) == CgroupVersion.V2


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """The text of /proc/<pid>/cgroup -> hierarchy -> path: each v1 line under each of its
    controller names (``4:cpu,cpuacct:/a`` gives cpu and cpuacct), the v2 line under ''."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _number, names, path = parts
        for name in names.split(",") if names else [_V2_KEY]:
            found[name] = path
    return found


def groups_of(pid: int) -> dict[str, str]:
    """Where process ``pid`` is, per hierarchy (``parse_proc_cgroup``); empty if it is gone.
    Paths are as this process's cgroup namespace sees them."""
    return parse_proc_cgroup(_read(Path(f"/proc/{pid}/cgroup")) or "")


def remove_group(
    layout: CgroupLayout, controllers: Iterable[str], rel: str, wait: float = 5.0
) -> None:
    """Remove the leaf ``rel`` where it exists (missing is fine). A process that just died
    keeps its group busy for a moment (EBUSY): retried for up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    for root in _roots(layout, controllers):
        while True:
            try:
                (root / rel).rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno == errno.EBUSY and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise HostFailure(f"cannot remove cgroup {root / rel}: {exc}") from exc


def every_hierarchy(layout: CgroupLayout) -> list[Path]:
    """The mount points of all the host's hierarchies (v1 named ones and cgroup2 too)."""
    roots = dict.fromkeys(layout.v1.values())
    if layout.v2_mount is not None:
        roots[layout.v2_mount] = None
    return list(roots)


def group_in_any(layout: CgroupLayout, rel: str) -> bool:
    return any((root / rel).is_dir() for root in every_hierarchy(layout))


def remove_empty_tree(layout: CgroupLayout, rel: str, wait: float = 5.0) -> None:
    """Remove ``rel`` and the groups under it in every hierarchy, deepest first, where they
    hold no process: what a guest's runtime left when it died without its clean-up (a killed
    LXC monitor). A dead process not yet reaped keeps its group busy: retried for up to
    ``wait`` seconds."""
    deadline = time.monotonic() + wait
    for root in every_hierarchy(layout):
        top = root / rel
        if not top.is_dir():
            continue
        groups = sorted((p for p in top.rglob("*") if p.is_dir()),
                        key=lambda p: len(p.parts), reverse=True)
        for group in [*groups, top]:
            while True:
                try:
                    group.rmdir()
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                        log.warning("cannot remove cgroup %s: %s", group, exc)
                        break
                    time.sleep(0.05)


def group_exists(layout: CgroupLayout, controller: str, rel: str) -> bool:
    root = hierarchy(layout, controller)
    return root is not None and (root / rel).is_dir()


def read(layout: CgroupLayout, controller: str, rel: str, file: str) -> str | None:
    root = hierarchy(layout, controller)
    return None if root is None else _read(root / rel / file)


def memory_limit(layout: CgroupLayout, rel: str) -> int | None:
    """The group's memory limit in bytes as the kernel holds it (None: none, or no group)."""
    v1 = layout.controller_version("memory") == CgroupVersion.V1
    text = read(layout, "memory", rel, "memory.limit_in_bytes" if v1 else "memory.max")
    if text is None or text.strip() == "max":
        return None
    value = int(text.split()[0])
    return None if value >= 2**62 else value  # v1 writes "no limit" as a page-rounded 2**63


def swap_limit_possible(layout: CgroupLayout) -> bool:
    """Whether swap can be limited: v1 memsw files (swapaccount) or v2 memory.swap.max."""
    root = hierarchy(layout, "memory")
    if root is None:
        return False
    if layout.controller_version("memory") == CgroupVersion.V1:
        return (root / "memory.memsw.limit_in_bytes").exists()
    return True


# --- usage ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CgroupUsage:
    cpu_ns: int = 0
    memory: int = 0
    io_read_bytes: int = 0
    io_write_bytes: int = 0
    io_read_ops: int = 0
    io_write_ops: int = 0
    pids: int = 0
    oom_kills: int = 0


def parse_blkio(text: str) -> tuple[int, int]:
    """Total Read and Write of a v1 blkio.throttle.io_service_* file over all devices."""
    read_total = write_total = 0
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[1] == "Read":
            read_total += int(fields[2])
        elif len(fields) == 3 and fields[1] == "Write":
            write_total += int(fields[2])
    return read_total, write_total


def parse_io_stat(text: str) -> tuple[int, int, int, int]:
    """rbytes, wbytes, rios, wios summed over the devices of a v2 io.stat."""
    totals = {"rbytes": 0, "wbytes": 0, "rios": 0, "wios": 0}
    for line in text.splitlines():
        for word in line.split()[1:]:
            key, _, value = word.partition("=")
            if key in totals and value.isdigit():
                totals[key] += int(value)
    return totals["rbytes"], totals["wbytes"], totals["rios"], totals["wios"]


def parse_flat_keyed(text: str) -> dict[str, int]:
    """'key value' lines (memory.stat, cpu.stat, memory.events) -> dict."""
    found: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            found[key] = int(value)
    return found


def _int(text: str | None) -> int:
    try:
        return int((text or "0").split()[0])
    except (ValueError, IndexError):
        return 0


def _text(path: str) -> str | None:
    """A small kernel file (cgroup, one page at most) read with one ``os.read``: no Python
    file object (``stats`` of a thousand containers reads ~9 of these for each). No fds are
    kept open between reads: 9 per container would pass the default 1024-fd limit."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 65536)
        # A kernel seq_file read stops short of the request only at the end or at the end of
        # its one-page buffer (whole lines, so above ~2 KiB): a short answer is the whole file
        while len(data) >= 2048 and (more := os.read(fd, 65536)):
            data += more
        return data.decode(errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def _v1_memory(stat: str) -> int:
    """rss + shmem + mapped_file of a v1 ``memory.stat`` (its ``total_*`` lines): what the
    group really holds (``usage_in_bytes`` counts the page cache); 0 if none is there."""
    total = 0
    for key in ("\ntotal_rss ", "\ntotal_shmem ", "\ntotal_mapped_file "):
        at = stat.find(key)
        if at >= 0:
            end = stat.find("\n", at + len(key))
            total += _int(stat[at + len(key):end if end >= 0 else None])
    return total


def _subgroups(group: str) -> list[str]:
    """The cgroups right below ``group``. A cgroup directory's link count is 2 + its
    subdirectories (kernfs, as ext4), so the usual leaf costs one stat instead of listing its
    ~30 files, and LXC's container group (one child, ``inner``) a stat and an isdir; a file
    system without that count (or any doubt) is listed."""
    try:
        below = os.stat(group).st_nlink - 2
    except OSError:
        return []
    if below == 0:
        return []
    if below == 1 and os.path.isdir(f"{group}/inner"):
        return [f"{group}/inner"]
    with contextlib.suppress(OSError), os.scandir(group) as entries:
        return [e.path for e in entries if e.is_dir(follow_symlinks=False)]
    return []


class UsageReader:
    """``usage`` of many groups: the layout looked at once, plain string paths (``stats``
    of a thousand containers reads these files for each)."""

    def __init__(self, layout: CgroupLayout) -> None:
        def root(controller: str) -> str | None:
            found = hierarchy(layout, controller)
            return None if found is None else str(found)

        v1 = CgroupVersion.V1
        self.cpuacct = root("cpuacct") if layout.controller_version("cpuacct") == v1 else None
        self.cpu = root("cpu")
        self.memory = root("memory")
        self.memory_v1 = layout.controller_version("memory") == v1
        self.blkio = root("blkio") if layout.controller_version("blkio") == v1 else None
        self.io = root("io")
        self.pids = root("pids")
        self.cpuset = root("cpuset")

    def cpu_ns(self, rel: str) -> int:
        if self.cpuacct is not None:
            return _int(_text(f"{self.cpuacct}/{rel}/cpuacct.usage"))
        if self.cpu is None:
            return 0
        return parse_flat_keyed(_text(f"{self.cpu}/{rel}/cpu.stat") or "").get(
            "usage_usec", 0) * 1000

    def _oom_kills_v1(self, group: str) -> int:
        """v1 counts an OOM kill in the group of the killed task only: sum the subtree."""
        total, todo = 0, [group]
        while todo:
            current = todo.pop()
            text = _text(f"{current}/memory.oom_control")
            if text is None:
                continue
            at = text.find("oom_kill ")
            if at >= 0:
                total += _int(text[at + 9:])
            todo += _subgroups(current)
        return total

    def cpus(self, rel: str) -> str:
        """The group's ``cpuset.cpus`` ('' without a cpuset controller or group)."""
        return "" if self.cpuset is None else (
            _text(f"{self.cpuset}/{rel}/cpuset.cpus") or "").strip()

    def memory_limit(self, rel: str) -> int | None:
        """``memory_limit`` of the group, read like the rest of its usage."""
        if self.memory is None:
            return None
        name = "memory.limit_in_bytes" if self.memory_v1 else "memory.max"
        text = _text(f"{self.memory}/{rel}/{name}")
        if text is None or text.strip() == "max":
            return None
        value = _int(text)
        return None if value >= 2**62 else value

    def usage(self, rel: str) -> CgroupUsage:
        """What the group ``rel`` has used so far (zeros for controllers the host lacks)."""
        memory = oom = 0
        if self.memory is not None:
            group = f"{self.memory}/{rel}"
            if self.memory_v1:
                memory = _v1_memory("\n" + (_text(f"{group}/memory.stat") or "")) \
                    or _int(_text(f"{group}/memory.usage_in_bytes"))
                oom = self._oom_kills_v1(group)
            else:
                memory = _int(_text(f"{group}/memory.current"))
                oom = parse_flat_keyed(_text(f"{group}/memory.events") or "").get(
                    "oom_kill", 0)
        rb = wb = ro = wo = 0
        if self.blkio is not None:
            group = f"{self.blkio}/{rel}"
            rb, wb = parse_blkio(_text(f"{group}/blkio.throttle.io_service_bytes_recursive")
                                 or _text(f"{group}/blkio.throttle.io_service_bytes") or "")
            ro, wo = parse_blkio(_text(f"{group}/blkio.throttle.io_serviced_recursive")
                                 or _text(f"{group}/blkio.throttle.io_serviced") or "")
        elif self.io is not None:
            rb, wb, ro, wo = parse_io_stat(_text(f"{self.io}/{rel}/io.stat") or "")
        pids = 0 if self.pids is None else _int(_text(f"{self.pids}/{rel}/pids.current"))
        return CgroupUsage(self.cpu_ns(rel), memory, rb, wb, ro, wo, pids, oom)


def usage(layout: CgroupLayout, rel: str) -> CgroupUsage:
    """What the group ``rel`` has used so far (zeros for controllers the host lacks)."""
    return UsageReader(layout).usage(rel)

