"""A container's resources: its cgroup (corral/ct/<id>) live, its LXC config for starts.

Limits go into the config (so they hold from the container's first instruction) and, on a
running container, straight into the cgroup files through ``host/cgroupfs``. IO limits need
the loop device LXC attached to the root image, so they are written after ``lxc-start``.
Disk growth: the image file grows at once; the ext4 inside grows offline at the next start
(online resize2fs needs CAP_SYS_RESOURCE).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

from corral.domain.instance import InstanceSpec
from corral.domain.resources import Resources, parse_cpu_list
from corral.drivers.base import Applied, AppliedChange, InstanceStats, KeyChange, root_disk_usage
from corral.drivers.cgroup_limits import limit_writes, lxc_config_lines
from corral.drivers.lxc.config import RESOURCES_MARKER, cgroup_dirs
from corral.host import cgroupfs
from corral.host.cgroups import CgroupLayout, CgroupVersion
from corral.host.diskgrow import grow_ext4_offline, grow_file, needs_fs_grow
from corral.host.loopmount import loop_devices

_IO_KEYS = ("io_read_bps", "io_write_bps", "io_iops")


def cgroup_path(lxc_name: str) -> str:
    return cgroup_dirs(lxc_name)["container"]


def config_lines(layout: CgroupLayout, res: Resources) -> list[str]:
    """The limit lines of the LXC config (no IO: the loop device does not exist yet)."""
    writes = limit_writes(layout, res, ct=True, memsw=cgroupfs.swap_limit_possible(layout))
    return lxc_config_lines(writes)


def rewrite_config(config: Path, layout: CgroupLayout, res: Resources) -> None:
    """Replace the resources section of an existing config (everything after the marker)."""
    text = config.read_text()
    head = text.split(RESOURCES_MARKER, 1)[0].rstrip("\n")
    body = "\n".join([head, RESOURCES_MARKER, *config_lines(layout, res)]) + "\n"
    if body == text:
        return  # the usual start: nothing changed since the last one
    tmp = config.with_suffix(".tmp")
    tmp.write_text(body)
    tmp.replace(config)


def apply_live(layout: CgroupLayout, lxc_name: str, image: Path, res: Resources) -> None:
    rel = cgroup_path(lxc_name)
    writes = limit_writes(layout, res, ct=True, io_devices=loop_devices(image),
                          memsw=cgroupfs.swap_limit_possible(layout))
    for w in writes:
        cgroupfs.apply(layout, rel, w.controller, w.file, w.value)


def prepare_start(
    spec: InstanceSpec, config: Path, layout: CgroupLayout, in_use: Callable[[], bool]
) -> None:
    """Before lxc-start: grow the filesystem offline if the image grew (never while
    ``in_use``: only a stopped container's image may be checked), refresh the limits."""
    grow_file(spec.disk_path, spec.resources.disk)
    if needs_fs_grow(spec.disk_path) and not in_use():
        grow_ext4_offline(spec.disk_path)
    rewrite_config(config, layout, spec.resources)


def apply(
    spec: InstanceSpec, lxc_name: str, config: Path, layout: CgroupLayout, old: Resources,
    new: Resources, running: bool,
) -> AppliedChange:
    if new.disk > old.disk:
        grow_file(spec.disk_path, new.disk)
    rewrite_config(config, layout, new)
    if running:
        apply_live(layout, lxc_name, spec.disk_path, new)
    swap_ok = cgroupfs.swap_limit_possible(layout)
    io_v1 = layout.controller_version("blkio") == CgroupVersion.V1
    changes = []
    for key in new.changed_keys(old):
        if key == "max_cpus":
            changes.append(KeyChange(key, Applied.NOT_APPLICABLE,
                                     "containers have no vCPUs; cpus caps their CPU time"))
        elif key == "swap" and not swap_ok:
            changes.append(KeyChange(key, Applied.NOT_APPLICABLE,
                                     "this host has no swap accounting (swapaccount)"))
        elif key == "disk":
            changes.append(KeyChange(
                key, Applied.NEXT_START,
                "image grown now; its ext4 grows offline at the next start (online resize2fs "
                "needs CAP_SYS_RESOURCE)"))
        elif not running:
            changes.append(KeyChange(key, Applied.NEXT_START, "the container is stopped"))
        elif key in _IO_KEYS and io_v1:
            changes.append(KeyChange(key, Applied.LIVE,
                                     "cgroup v1 throttles direct IO only, not buffered writes"))
        else:
            changes.append(KeyChange(key, Applied.LIVE))
    return AppliedChange(tuple(changes))


@functools.lru_cache(maxsize=64)
def _cpu_list(text: str) -> tuple[int, ...]:
    """``parse_cpu_list`` of a cpuset (a thousand containers share a handful of them)."""
    return parse_cpu_list(text)


def stats(spec: InstanceSpec, lxc_name: str, layout: CgroupLayout, running: bool,
          reader: cgroupfs.UsageReader | None = None) -> InstanceStats:
    """``reader``: one for many containers (``stats_many``)."""
    disk_used, disk_size = root_disk_usage(spec)
    if not running:
        return InstanceStats(running=False, disk_used=disk_used, disk_size=disk_size)
    rel = cgroup_path(lxc_name)
    reader = reader or cgroupfs.UsageReader(layout)
    used = reader.usage(rel)
    res = spec.resources
    cpuset = reader.cpus(rel)
    allowed = len(_cpu_list(cpuset)) if cpuset else os.cpu_count() or 1
    return InstanceStats(
        running=True, cpu_ns=used.cpu_ns, vcpus=min(allowed, res.cpus),
        memory_used=used.memory,
        memory_total=reader.memory_limit(rel) or res.memory,  # the limit in force
        disk_used=disk_used,
        disk_size=disk_size, io_read_bytes=used.io_read_bytes,
        io_write_bytes=used.io_write_bytes, io_read_ops=used.io_read_ops,
        io_write_ops=used.io_write_ops, pids=used.pids, oom_kills=used.oom_kills,
    )
