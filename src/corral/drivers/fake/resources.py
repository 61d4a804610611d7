"""Resources for the fake driver: live values kept beside its state file, real disk growth.

It follows the same rules the real drivers report, so API and CLI tests see the same
answers: stopped -> every key at next start; running -> live, except a VM's ``max_cpus`` and
``cpus`` beyond it (next start) and keys a kind does not have (not applicable).
"""

from __future__ import annotations

import json
from pathlib import Path

from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.drivers.base import Applied, AppliedChange, InstanceStats, KeyChange, root_disk_usage


def live_path(spec: InstanceSpec) -> Path:
    return spec.directory / "fake-resources.json"


def live_resources(spec: InstanceSpec) -> Resources:
    try:
        return Resources.from_dict(json.loads(live_path(spec).read_text()))
    except FileNotFoundError:
        return spec.resources


def started(spec: InstanceSpec) -> None:
    """At start the runtime takes the persisted resources (and a VM its vCPU maximum)."""
    live_path(spec).write_text(json.dumps(spec.resources.to_dict()))


def apply(spec: InstanceSpec, old: Resources, new: Resources, running: bool) -> AppliedChange:
    if new.disk > spec.disk_path.stat().st_size:
        with spec.disk_path.open("r+b") as disk:
            disk.truncate(new.disk)
    changes: list[KeyChange] = []
    current = live_resources(spec)
    live = current
    booted_max = max(current.max_cpus or current.cpus, current.cpus)
    for key in new.changed_keys(old):
        if spec.kind is Kind.CT and key == "max_cpus":
            changes.append(KeyChange(key, Applied.NOT_APPLICABLE, "containers have no vCPUs"))
        elif spec.kind is Kind.VM and key in ("swap", "pids"):
            changes.append(KeyChange(key, Applied.NOT_APPLICABLE, "VMs: the guest's own"))
        elif not running:
            changes.append(KeyChange(key, Applied.NEXT_START, "the instance is stopped"))
        elif spec.kind is Kind.VM and (
            key == "max_cpus" or (key == "cpus" and new.cpus > booted_max)
        ):
            changes.append(KeyChange(key, Applied.NEXT_START,
                                     f"above the {booted_max} vCPUs it booted with"))
        else:
            live = Resources.from_dict(live.to_dict() | {key: getattr(new, key)})
            changes.append(KeyChange(key, Applied.LIVE))
    if running:
        live_path(spec).write_text(json.dumps(live.to_dict()))
    return AppliedChange(tuple(changes))


def stats(spec: InstanceSpec, running: bool) -> InstanceStats:
    disk_used, disk_size = root_disk_usage(spec)
    if not running:
        return InstanceStats(running=False, disk_used=disk_used, disk_size=disk_size)
    live = live_resources(spec)
    return InstanceStats(
        running=True, vcpus=live.cpus, memory_total=live.memory,
        memory_used=min(live.memory, 8 * 1024**2), disk_used=disk_used, disk_size=disk_size,
        pids=1 if spec.kind is Kind.CT else 0,
    )
