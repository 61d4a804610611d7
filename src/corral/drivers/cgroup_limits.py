"""Resource keys -> cgroup files, for v1 and v2 (pure: no I/O).

Both the LXC driver (a container's cgroup, in its config and live) and the QEMU driver (the
QEMU process's cgroup) use this one mapping. Each controller is mapped to the hierarchy the
host binds it to (``CgroupLayout.controller_version``), so a hybrid host works per controller.
A key left unset writes the value that removes the limit, so a live change can clear it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from corral.domain.resources import (
    DEFAULT_SHARES,
    MAX_SHARES,
    Resources,
    effective_quota_percent,
)
from corral.host.cgroupfs import INHERIT
from corral.host.cgroups import CgroupLayout, CgroupVersion

CFS_PERIOD_US = 100_000
# cpuset.cpus without a pin is INHERIT: the parent's CPUs (read live; omitted from LXC configs)

CONTAINER_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "io")
VM_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory")


@dataclass(frozen=True)
class CgroupWrite:
    controller: str  # the controller whose hierarchy holds the file (v1 mount or v2)
    version: CgroupVersion
    file: str
    value: str


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares (2..262144, 1024 default) -> v2 cpu.weight (1..10000, 100)."""
    return max(1, min(10000, 1 + ((shares - 2) * 9999) // 262142))


def _cpu(v: CgroupVersion, res: Resources, ct: bool) -> list[CgroupWrite]:
    shares = res.cpu_shares or DEFAULT_SHARES
    quota = effective_quota_percent(res, ct)
    if v == CgroupVersion.V1:
        quota_us = -1 if quota is None else quota * CFS_PERIOD_US // 100
        return [
            CgroupWrite("cpu", v, "cpu.shares", str(shares)),
            CgroupWrite("cpu", v, "cpu.cfs_period_us", str(CFS_PERIOD_US)),
            CgroupWrite("cpu", v, "cpu.cfs_quota_us", str(quota_us)),
        ]
    weight = 100 if res.cpu_shares is None else shares_to_weight(shares)
    cap = "max" if quota is None else str(quota * CFS_PERIOD_US // 100)
    return [
        CgroupWrite("cpu", v, "cpu.weight", str(weight)),
        CgroupWrite("cpu", v, "cpu.max", f"{cap} {CFS_PERIOD_US}"),
    ]


def _memory(v: CgroupVersion, res: Resources, memsw: bool) -> list[CgroupWrite]:
    if v == CgroupVersion.V1:
        writes = []
        if memsw:  # memsw >= limit at every moment: lift it, set the limit, set it again
            writes.append(CgroupWrite("memory", v, "memory.memsw.limit_in_bytes", "-1"))
        writes.append(CgroupWrite("memory", v, "memory.limit_in_bytes", str(res.memory)))
        soft = -1 if res.memory_min is None else res.memory_min
        writes.append(CgroupWrite("memory", v, "memory.soft_limit_in_bytes", str(soft)))
        if memsw and res.swap is not None:
            total = str(res.memory + res.swap)
            writes.append(CgroupWrite("memory", v, "memory.memsw.limit_in_bytes", total))
        return writes
    writes = [
        CgroupWrite("memory", v, "memory.max", str(res.memory)),
        CgroupWrite("memory", v, "memory.low", str(res.memory_min or 0)),
    ]
    if memsw:
        swap = "max" if res.swap is None else str(res.swap)
        writes.append(CgroupWrite("memory", v, "memory.swap.max", swap))
    return writes


def _io(v: CgroupVersion, res: Resources, devices: Sequence[str]) -> list[CgroupWrite]:
    writes: list[CgroupWrite] = []
    for dev in devices:
        if v == CgroupVersion.V1:
            for file, value in (
                ("blkio.throttle.read_bps_device", res.io_read_bps),
                ("blkio.throttle.write_bps_device", res.io_write_bps),
                ("blkio.throttle.read_iops_device", res.io_iops),
                ("blkio.throttle.write_iops_device", res.io_iops),
            ):
                writes.append(CgroupWrite("blkio", v, file, f"{dev} {value or 0}"))
        else:
            def lim(value: int | None) -> str:
                return "max" if value is None else str(value)

            line = (f"{dev} rbps={lim(res.io_read_bps)} wbps={lim(res.io_write_bps)} "
                    f"riops={lim(res.io_iops)} wiops={lim(res.io_iops)}")
            writes.append(CgroupWrite("io", v, "io.max", line))
    return writes


def weight_write(layout: CgroupLayout, res: Resources, factor: int = 1) -> CgroupWrite | None:
    """The one write of ``res``'s CPU weight times ``factor`` (v1 ``cpu.shares``, v2
    ``cpu.weight``; capped at each file's maximum); None without a cpu controller. A VM's
    launch priority (host policy ``vm_launch_priority``) is this write with its factor while
    QEMU initialises, then again with 1."""
    v = layout.controller_version("cpu")
    if v is None:
        return None
    shares = res.cpu_shares or DEFAULT_SHARES
    if v == CgroupVersion.V1:
        return CgroupWrite("cpu", v, "cpu.shares", str(min(MAX_SHARES, shares * factor)))
    weight = 100 if res.cpu_shares is None else shares_to_weight(shares)
    return CgroupWrite("cpu", v, "cpu.weight", str(min(10000, weight * factor)))


def limit_writes(
    layout: CgroupLayout, res: Resources, *, ct: bool, io_devices: Sequence[str] = (),
    memsw: bool = False,
) -> list[CgroupWrite]:
    """Every file write that makes a cgroup carry ``res``, in a safe order.

    ``ct``: a container (memory and pids limits, ``cpus`` as a cap). A VM's QEMU process gets
    CPU weight, cap and pinning only: its memory is bounded by ``-m`` and the balloon, its
    IO by QEMU's own throttling. ``io_devices``: "MAJ:MIN" of the block devices to throttle.
    ``memsw``: whether swap can be limited (v1 memsw files / v2 memory.swap.max exist).
    """
    writes: list[CgroupWrite] = []
    cpu = layout.controller_version("cpu")
    if cpu is not None:
        writes += _cpu(cpu, res, ct)
    cpuset = layout.controller_version("cpuset")
    if cpuset is not None:
        writes.append(CgroupWrite("cpuset", cpuset, "cpuset.cpus", res.cpu_pin or INHERIT))
    if not ct:
        return writes
    memory = layout.controller_version("memory")
    if memory is not None:
        writes += _memory(memory, res, memsw)
    pids = layout.controller_version("pids")
    if pids is not None:
        writes.append(CgroupWrite("pids", pids, "pids.max", str(res.pids or "max")))
    io_controller = "blkio" if layout.controller_version("blkio") else "io"
    io = layout.controller_version(io_controller)
    if io is not None and io_devices:
        writes += _io(io, res, io_devices)
    return writes


def lxc_config_lines(writes: Sequence[CgroupWrite]) -> list[str]:
    """LXC keys for the writes (lxc.cgroup.* on v1, lxc.cgroup2.* on v2)."""
    lines = []
    for w in writes:
        if w.value == INHERIT:
            continue
        prefix = "lxc.cgroup" if w.version == CgroupVersion.V1 else "lxc.cgroup2"
        lines.append(f"{prefix}.{w.file} = {w.value}")
    return lines
