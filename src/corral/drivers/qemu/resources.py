"""A VM's resources: the QEMU process's cgroup (CPU weight, cap, pinning) and QMP (vCPUs,
balloon, disk size, IO throttling).

* CPU: QEMU starts in ``corral/vm/<id>`` (its launcher is moved there: placement.py);
  ``cpu_limit`` caps the whole process (vCPU and IO threads), ``cpu_shares`` weighs it,
  ``cpu_pin`` pins it.
* vCPUs: ``max_cpus`` vCPUs exist from boot (default: ``cpus`` or the host's CPU count,
  whichever is more). On q35/pc the extra ones are hot-plugged with ``device_add``; microvm
  cannot hot-plug (QEMU: "query-hotpluggable-cpus is not enabled"), so there all of them are
  present and the kernel boots only ``cpus`` (``maxcpus=``). Either way the guest agent then
  onlines/offlines CPUs in sysfs. ``cpus`` above what exists applies at the next start.
* Memory: ``-m memory`` at boot plus a virtio-balloon; a lower ``memory`` inflates the
  balloon live, a higher one deflates it up to the boot size, beyond that: next start.
* Disk: ``block_resize`` (the guest sees the block device grow; growing its filesystem is
  the guest's business). IO: ``block_set_io_throttle`` on the root disk.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from corral.domain.errors import HostFailure
from corral.domain.instance import InstanceSpec
from corral.domain.resources import Resources
from corral.domain.sizes import format_size
from corral.drivers.base import Applied, AppliedChange, InstanceStats, KeyChange, root_disk_usage
from corral.drivers.cgroup_limits import VM_CONTROLLERS, limit_writes, weight_write
from corral.drivers.qemu import agent
from corral.drivers.qemu.cmdline import VmPaths
from corral.drivers.qemu.qmp import Command, qmp, qmp_many
from corral.host import cgroupfs
from corral.host.cgroups import CgroupLayout
from corral.host.diskgrow import grow_file

log = logging.getLogger("corral.drivers.qemu")

DRIVE = "root"
DISK_DEVICE = "root-disk"
_CGROUP_KEYS = ("cpu_limit", "cpu_shares", "cpu_pin")
_IO_KEYS = ("io_read_bps", "io_write_bps", "io_iops")
LIVE_FILE = "resources-live.json"


def cgroup_path(spec: InstanceSpec) -> str:
    return f"{cgroupfs.corral_root()}/vm/{spec.id}"


def max_cpus(res: Resources) -> int:
    return max(res.cpus, res.max_cpus or os.cpu_count() or 1)


def _live_file(paths: VmPaths) -> Path:
    return paths.run / LIVE_FILE


def _save_live(paths: VmPaths, data: dict[str, Any]) -> None:
    _live_file(paths).write_text(json.dumps(data))


def _load_live(paths: VmPaths) -> dict[str, Any]:
    try:
        found: dict[str, Any] = json.loads(_live_file(paths).read_text())
        return found
    except (OSError, ValueError):
        return {}


# --- cgroup -----------------------------------------------------------------------------------

def place(spec: InstanceSpec, layout: CgroupLayout, pid: int) -> None:
    """Put a freshly started QEMU into its cgroup with the persisted limits."""
    prepare_cgroup(spec, layout)
    move(spec, layout, pid)


def move(spec: InstanceSpec, layout: CgroupLayout, pid: int) -> None:
    """QEMU's process (all its threads) into the VM's group in every hierarchy."""
    cgroupfs.move_process(layout, VM_CONTROLLERS, cgroup_path(spec), pid)


def prepare_cgroup(spec: InstanceSpec, layout: CgroupLayout) -> None:
    """The VM's cgroup with the persisted limits, before QEMU is moved into it. The group
    outlives a stop (``unplace`` at delete): the next start finds it and only rewrites the
    limits; a group made just before QEMU started slowed QEMU's own start-up in a raw-QEMU
    experiment (noisy: docs/perf-log.md, "Start-path costs")."""
    cgroupfs.ensure_group(layout, VM_CONTROLLERS, cgroup_path(spec))
    apply_cgroup(spec, layout, spec.resources)


def launching(spec: InstanceSpec, paths: VmPaths, layout: CgroupLayout,
              priority: int = 1) -> None:
    """While QEMU initialises (off the start's critical path): its cgroup, and what the
    guest boots with (read back by live changes; removed with the runtime files if QEMU
    fails). ``priority`` > 1: the group's CPU weight times that until ``started`` (host
    policy ``vm_launch_priority``: a launch does not wait behind guests already booting)."""
    prepare_cgroup(spec, layout)
    if priority > 1:
        _weigh(spec, layout, priority)
    _save_live(paths, {"cpus": spec.resources.cpus, "memory": spec.resources.memory})


def _weigh(spec: InstanceSpec, layout: CgroupLayout, factor: int) -> None:
    w = weight_write(layout, spec.resources, factor)
    if w is not None:
        cgroupfs.apply(layout, cgroup_path(spec), w.controller, w.file, w.value)


def restore_weight(spec: InstanceSpec, layout: CgroupLayout) -> None:
    """The group's CPU weight back to the VM's own (factor 1) if the group exists: after a
    daemon restart, a launch it was in the middle of may have left the boost."""
    if cgroupfs.group_exists(layout, "cpu", cgroup_path(spec)):
        _weigh(spec, layout, 1)


def apply_cgroup(spec: InstanceSpec, layout: CgroupLayout, res: Resources) -> None:
    rel = cgroup_path(spec)
    for w in limit_writes(layout, res, ct=False):
        cgroupfs.apply(layout, rel, w.controller, w.file, w.value)


def unplace(spec: InstanceSpec, layout: CgroupLayout) -> None:
    cgroupfs.remove_group(layout, VM_CONTROLLERS, cgroup_path(spec))


def unplace_after_failure(spec: InstanceSpec, layout: CgroupLayout) -> None:
    """``unplace`` in the clean-up of a start that failed: a group it cannot remove is
    logged, never raised over why the start failed (a read-only cgroup mount reported
    "cannot remove cgroup" instead of the write that failed first)."""
    try:
        unplace(spec, layout)
    except HostFailure as exc:
        log.warning("after %s failed to start: %s", spec.name, exc)


# --- QMP --------------------------------------------------------------------------------------

def io_throttle(paths: VmPaths, res: Resources) -> None:
    args: dict[str, Any] = {
        "bps": 0, "bps_rd": res.io_read_bps or 0, "bps_wr": res.io_write_bps or 0,
        "iops": 0, "iops_rd": res.io_iops or 0, "iops_wr": res.io_iops or 0,
    }
    # virtio-blk-pci has its VirtIOBlock below as virtio-backend; virtio-blk-device is it.
    errors = []
    for qom in (f"/machine/peripheral/{DISK_DEVICE}/virtio-backend",
                f"/machine/peripheral/{DISK_DEVICE}"):
        try:
            qmp(paths.qmp, "block_set_io_throttle", {"id": qom, **args})
            return
        except HostFailure as exc:
            errors.append(exc.message)
    raise HostFailure("; ".join(errors))


def booted_memory(paths: VmPaths) -> int:
    summary = qmp(paths.qmp, "query-memory-size-summary")
    return int(summary["base-memory"])


def balloon(paths: VmPaths, target: int) -> None:
    qmp(paths.qmp, "balloon", {"value": target})


def present_cpus(paths: VmPaths) -> int:
    return len(qmp(paths.qmp, "query-cpus-fast"))


def hotplug_cpus(paths: VmPaths, wanted: int) -> int:
    """Plug vCPUs until ``wanted`` exist (q35/pc); the number present afterwards."""
    try:
        slots = qmp(paths.qmp, "query-hotpluggable-cpus")
    except HostFailure:
        return present_cpus(paths)  # microvm: no hot-plug, all vCPUs exist from boot
    present = sum(1 for s in slots if "qom-path" in s)
    free = sorted((s for s in slots if "qom-path" not in s),
                  key=lambda s: tuple(sorted(s["props"].items())))
    commands: list[tuple[str, dict[str, Any] | None]] = []
    for slot in free[: max(0, wanted - present)]:
        ident = "cpu-" + "-".join(str(v) for _k, v in sorted(slot["props"].items()))
        commands.append(("device_add", {"driver": slot["type"], "id": ident, **slot["props"]}))
    if commands:
        qmp_many(paths.qmp, commands)
    return present + len(commands)


def online_cpus(paths: VmPaths, count: int) -> None:
    """Ask the guest (agent) to have CPUs 0..count-1 online and the others offline."""
    script = (
        "for c in /sys/devices/system/cpu/cpu[0-9]*; do n=${c##*cpu}; "
        "[ -f $c/online ] || continue; "
        f"if [ $n -lt {int(count)} ]; then echo 1 > $c/online; else echo 0 > $c/online; fi; "
        "done; cat /sys/devices/system/cpu/online"
    )
    rid = agent.new_id()
    request = agent.encode_exec(rid, ["sh", "-c", script], 20.0, b"")
    reply = agent.AgentClient(paths.agent, paths.agent_lock).call(
        request, rid, 20.0 + agent.EXEC_GRACE)
    if reply.verb != "RESULT" or reply.exit_code != 0:
        said = reply.message if reply.verb == "ERROR" else reply.stderr.decode(errors="replace")
        raise HostFailure(f"the guest could not online {count} CPUs: {said.strip()}")


# --- the whole change ------------------------------------------------------------------------

def started(spec: InstanceSpec, paths: VmPaths, layout: CgroupLayout, pid: int,
            placed: bool, priority: int = 1) -> None:
    """Right after QEMU started: cgroup (unless ``placed`` already, in a group made by
    ``launching``), its configured CPU weight again (after a launch ``priority`` > 1), IO
    throttling."""
    if not placed:
        move(spec, layout, pid)
    if priority > 1:
        _weigh(spec, layout, 1)
    res = spec.resources
    if any(getattr(res, k) is not None for k in _IO_KEYS):
        io_throttle(paths, res)


def arrived(spec: InstanceSpec, paths: VmPaths, layout: CgroupLayout, pid: int,
            booted: int) -> None:
    """A QEMU started to receive a live migration: into its cgroup with the persisted limits
    at once (before any RAM arrives); ``booted`` is the source's boot memory."""
    place(spec, layout, pid)
    _save_live(paths, {"cpus": spec.resources.cpus, "memory": booted})


def resumed(spec: InstanceSpec, paths: VmPaths) -> None:
    """A migrated-in guest runs: QMP settings that are the host's, not the guest's state —
    IO throttling, and the balloon target below the boot memory."""
    res = spec.resources
    if any(getattr(res, k) is not None for k in _IO_KEYS):
        io_throttle(paths, res)
    booted = int(_load_live(paths).get("memory") or res.memory)
    if res.memory < booted:
        balloon(paths, res.memory)


def apply(
    spec: InstanceSpec, paths: VmPaths, layout: CgroupLayout, old: Resources, new: Resources,
    running: bool,
) -> AppliedChange:
    keys = new.changed_keys(old)
    changes: list[KeyChange] = []
    if not running:
        if new.disk > old.disk:
            grow_file(spec.disk_path, new.disk)
        for key in keys:
            if key == "swap":
                changes.append(KeyChange(key, Applied.NOT_APPLICABLE,
                                         "a VM's swap is its guest's own"))
            else:
                changes.append(KeyChange(key, Applied.NEXT_START, "the VM is stopped"))
        return AppliedChange(tuple(changes))
    live = _load_live(paths)
    if any(k in keys for k in _CGROUP_KEYS):
        apply_cgroup(spec, layout, new)
    if any(k in keys for k in _IO_KEYS):
        io_throttle(paths, new)
    for key in keys:
        if key in _CGROUP_KEYS:
            changes.append(KeyChange(key, Applied.LIVE, "on the QEMU process's cgroup"))
        elif key in _IO_KEYS:
            changes.append(KeyChange(key, Applied.LIVE, "QEMU block_set_io_throttle"))
        elif key == "swap":
            changes.append(KeyChange(key, Applied.NOT_APPLICABLE,
                                     "a VM's swap is its guest's own"))
        elif key == "max_cpus":
            changes.append(KeyChange(key, Applied.NEXT_START, "vCPU slots are made at boot"))
        elif key == "memory_min":
            changes.append(KeyChange(key, Applied.LIVE, "the floor the balloon never passes"))
        elif key == "memory":
            base = booted_memory(paths)
            balloon(paths, min(new.memory, base))
            live["memory"] = min(new.memory, base)
            if new.memory > base:
                changes.append(KeyChange(
                    key, Applied.NEXT_START,
                    f"balloon deflated to the {format_size(base)} it booted with now; "
                    "the rest at the next start"))
            else:
                changes.append(KeyChange(key, Applied.LIVE, "virtio-balloon"))
        elif key == "cpus":
            have = hotplug_cpus(paths, new.cpus)
            online_cpus(paths, min(new.cpus, have))
            live["cpus"] = min(new.cpus, have)
            if new.cpus > have:
                changes.append(KeyChange(
                    key, Applied.NEXT_START,
                    f"above the {have} vCPUs this VM has (max_cpus); {have} online now"))
            else:
                changes.append(KeyChange(key, Applied.LIVE, "guest onlined/offlined vCPUs"))
        elif key == "disk":
            qmp(paths.qmp, "block_resize", {"device": DRIVE, "size": new.disk})
            changes.append(KeyChange(
                key, Applied.LIVE,
                "the block device grew; growing its filesystem is up to the guest"))
        else:
            changes.append(KeyChange(key, Applied.NEXT_START))
    _save_live(paths, live)
    return AppliedChange(tuple(changes))


STATS_QUERIES: list[Command] = [("query-balloon", None), ("query-blockstats", None)]


def stats(spec: InstanceSpec, paths: VmPaths, layout: CgroupLayout, pid: int | None,
          said: list[Any] | HostFailure | None = None) -> InstanceStats:
    """``said``: the answers to ``STATS_QUERIES`` when the caller asked many VMs at once
    (``stats_many``); None: asked here."""
    disk_used, disk_size = root_disk_usage(spec)
    if pid is None:
        return InstanceStats(running=False, disk_used=disk_used, disk_size=disk_size)
    rel = cgroup_path(spec)
    used = cgroupfs.usage(layout, rel) if cgroupfs.group_exists(layout, "cpu", rel) else None
    cpu_ns = used.cpu_ns if used else _proc_cpu_ns(pid)
    memory_used = used.memory if used else 0
    live = _load_live(paths)
    memory_total = int(live.get("memory", spec.resources.memory))
    rd = wr = rops = wops = 0
    try:
        if isinstance(said, HostFailure):
            raise said
        results = said if said is not None else qmp_many(paths.qmp, STATS_QUERIES)
        memory_total = int(results[0].get("actual", memory_total))
        for dev in results[1]:
            if dev.get("device") == DRIVE or dev.get("qdev", "").endswith(DISK_DEVICE):
                s = dev["stats"]
                rd, wr = int(s["rd_bytes"]), int(s["wr_bytes"])
                rops, wops = int(s["rd_operations"]), int(s["wr_operations"])
    except (HostFailure, KeyError, TypeError):
        pass
    return InstanceStats(
        running=True, cpu_ns=cpu_ns, vcpus=int(live.get("cpus", spec.resources.cpus)),
        memory_used=memory_used or _proc_rss(pid), memory_total=memory_total,
        disk_used=disk_used, disk_size=disk_size, io_read_bytes=rd, io_write_bytes=wr,
        io_read_ops=rops, io_write_ops=wops,
    )


def cpu_ns(spec: InstanceSpec, layout: CgroupLayout, pid: int) -> int:
    """The CPU time the VM has used: its cgroup's, else its QEMU process's."""
    rel = cgroup_path(spec)
    if cgroupfs.group_exists(layout, "cpu", rel):
        return cgroupfs.UsageReader(layout).cpu_ns(rel)
    return _proc_cpu_ns(pid)


def _proc_cpu_ns(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0


def _proc_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def kernel_maxcpus(res: Resources, machine: str) -> list[str]:
    """Kernel words: microvm boots all ``max_cpus`` vCPUs present, the kernel only ``cpus``."""
    if machine == "microvm" and max_cpus(res) > res.cpus:
        return [f"maxcpus={res.cpus}"]
    return []

