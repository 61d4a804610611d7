"""Snapshot hooks of the QEMU driver.

* Disk: QMP ``stop`` (QEMU drains and flushes the disks), a copy-on-write clone of the raw
  root image and of every data disk, ``cont``. The guest is first asked (agent ``sync``) to
  write its page cache.
* Memory: while paused, QMP ``snapshot-save`` writes QEMU's state (RAM and devices) into a
  small qcow2 side file per snapshot (``vmstate.qcow2``, hot-added as a block node that no
  device uses: a raw root disk cannot hold a vmstate). Revert starts QEMU on the reverted
  disk with its vCPUs stopped (``-S``: the guest never runs a single instruction of a fresh
  boot, so it cannot touch the disk), ``snapshot-load``s the state into it, then resumes:
  the guest continues where it was.
* Online backup: ``blockdev-backup`` (sync=full) of every disk to a temporary raw file
  each, all started in ONE QMP ``transaction`` (with a new dirty bitmap per disk), so all
  copies share one point in time; QEMU's copy-before-write filters keep them while the guest
  runs. A data disk QEMU does not have (added to a running microvm VM, attached at its next
  start) is not written by the guest and is simply cloned.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.domain.disks import CHUNK_SIZE as CHUNK  # = the dirty bitmaps' granularity
from corral.domain.errors import Conflict, HostFailure
from corral.domain.instance import InstanceSpec
from corral.drivers.base import RuntimeState
from corral.drivers.qemu.cmdline import VmDisk
from corral.drivers.qemu.driver import QemuDriver
from corral.drivers.qemu.migrate import attached_disks, source_boot_memory
from corral.drivers.qemu.qmp import monitor, qmp
from corral.drivers.snapshots import (
    ROOT,
    Captured,
    DiskCopy,
    MemoryNotRestored,
    clone_all,
    replace_disks,
)
from corral.host.run import require_tool, run
from corral.templates.image import TemplateImage

VMSTATE = "vmstate.qcow2"
BOOT = "vmstate.json"
"""The RAM size QEMU booted with (``-m``) when the state was saved: a live ``set memory=``
balloons below it, and the state only loads into a QEMU started with the same RAM."""
TAG = "corral"
_NODE = "corral-vmstate"
_BACKUP_NODE = "corral-backup"


def node_of(disk: str) -> str:
    """The QMP name of a disk: the root drive's id, a data disk's blockdev node."""
    return ROOT if disk == ROOT else VmDisk(disk, Path(), 0).node


@dataclass
class _Job:
    copy: DiskCopy
    node: str
    target: str  # the scratch node (and job id)
    since: str | None  # the bitmap of an incremental copy
    delta: Path | None = None  # its qcow2 (only the dirty clusters)


def wait_job(sock: Path, job_id: str, timeout: float = 3600.0) -> None:
    """Wait for a QMP job (auto-dismiss off) to end, woken by its ``JOB_STATUS_CHANGE``
    events on the VM's session; dismiss it; HostFailure on its error."""
    deadline = time.monotonic() + timeout
    with monitor(sock).subscribe(["JOB_STATUS_CHANGE"]) as changes:
        while True:
            jobs: list[dict[str, Any]] = qmp(sock, "query-jobs")
            job = next((j for j in jobs if j.get("id") == job_id), None)
            if job is None:
                return
            if job.get("status") == "concluded":
                qmp(sock, "job-dismiss", {"id": job_id})
                if job.get("error"):
                    raise HostFailure(f"QEMU job {job_id} failed: {job['error']}")
                return
            left = deadline - time.monotonic()
            if left <= 0:
                with contextlib.suppress(HostFailure):
                    qmp(sock, "job-cancel", {"id": job_id})
                raise HostFailure(f"QEMU job {job_id} did not finish within {timeout:g} s")
            changes.get(min(1.0, left))  # any job's change: look again


class QemuSnapshots:
    def __init__(self, driver: QemuDriver) -> None:
        self.driver = driver

    def _sock(self, spec: InstanceSpec) -> Path:
        return spec.run_dir / "qmp.sock"

    def _state(self, spec: InstanceSpec) -> RuntimeState:
        return self.driver.status(spec).state

    def _guest_sync(self, spec: InstanceSpec) -> bool:
        """Ask the guest to write its page cache (best effort: the agent may not answer)."""
        try:
            return self.driver.exec(spec, ["sync"], timeout=10).exit_code == 0
        except Exception:
            return False

    def memory_refusal(self, spec: InstanceSpec) -> str | None:
        return None

    @contextlib.contextmanager
    def _paused(self, spec: InstanceSpec) -> Any:
        running = self._state(spec) is RuntimeState.RUNNING
        if running:
            qmp(self._sock(spec), "stop")
        try:
            yield
        finally:
            if running:
                qmp(self._sock(spec), "cont")

    def _vmstate_job(self, spec: InstanceSpec, path: Path, command: str) -> None:
        sock = self._sock(spec)
        qmp(sock, "blockdev-add", {
            "driver": "qcow2", "node-name": _NODE,
            "file": {"driver": "file", "filename": str(path)},
        })
        try:
            job = f"corral-{command}"
            qmp(sock, command, {"job-id": job, "tag": TAG, "vmstate": _NODE,
                                "devices": [_NODE]})
            wait_job(sock, job, timeout=600)
        finally:
            qmp(sock, "blockdev-del", {"node-name": _NODE})

    def take(self, spec: InstanceSpec, dest: Path, memory: bool,
             copies: Sequence[DiskCopy]) -> Captured:
        state = self._state(spec)
        up = state in (RuntimeState.RUNNING, RuntimeState.SUSPENDED)
        if memory and not up:
            raise Conflict(f"{spec.name} is {state.value}: a memory snapshot needs it running")
        synced = up and not memory and state is RuntimeState.RUNNING and self._guest_sync(spec)
        with self._paused(spec) if up else contextlib.nullcontext():
            method = clone_all(copies)  # paused: every disk at the same instant
            if memory:
                qemu_img = require_tool("qemu-img", "qemu-utils")
                run([qemu_img, "create", "-q", "-f", "qcow2", str(dest / VMSTATE), "1M"])
                (dest / BOOT).write_text(json.dumps({
                    "boot_memory": source_boot_memory(spec),
                    "attached": attached_disks(spec)}) + "\n")
                self._vmstate_job(spec, dest / VMSTATE, "snapshot-save")
        if memory:
            consistency = "memory and disk (QEMU state, paused for the save)"
        elif up:
            consistency = ("online: guest synced, paused for the clone" if synced else
                           "online: paused for the clone (crash-consistent: no guest agent)")
        else:
            consistency = "stopped (consistent)"
        return Captured(consistency, method)

    def revert(
        self, spec: InstanceSpec, template: TemplateImage, source: Path, memory: bool,
        copies: Sequence[DiskCopy],
    ) -> None:
        if self._state(spec) in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
            self.driver.stop(spec, force=True, timeout=0)
        replace_disks(copies)
        if not memory:
            return
        # -S: not one guest instruction yet; the RAM size the state was saved with
        boot = _boot(source)
        self.driver.start(spec, template, paused=True, boot_memory=boot.get("boot_memory"),
                          attached=boot.get("attached"))
        sock = self._sock(spec)
        try:
            self._vmstate_job(spec, source / VMSTATE, "snapshot-load")
            qmp(sock, "cont")
        except HostFailure as exc:
            # The disk is reverted already; a VM left stopped there would fail every retry
            # the same way: boot it from the reverted disk and say the memory is lost.
            self.driver.stop(spec, force=True, timeout=0)
            self.driver.start(spec, template)
            raise MemoryNotRestored(
                f"the memory state could not be restored ({exc}); {spec.name} was started "
                "from the snapshot's disk (a cold boot)") from exc
        except BaseException:
            self.driver.stop(spec, force=True, timeout=0)
            raise

    def capture_disks(self, spec: InstanceSpec, copies: Sequence[DiskCopy],
                      since: Mapping[str, str]) -> Captured:
        state = self._state(spec)
        if state not in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
            return Captured("stopped (consistent)", clone_all(copies))
        synced = state is RuntimeState.RUNNING and self._guest_sync(spec)
        sock = self._sock(spec)
        present = self._bitmaps(sock)  # node -> its bitmaps, for every disk QEMU has
        if ROOT not in present:  # never copy a disk the guest is writing without QEMU
            raise HostFailure(f"QEMU of '{spec.name}' does not list its root drive")
        tracking = f"corral-{secrets.token_hex(6)}"
        note = "guest synced" if synced else "crash-consistent: no guest agent"
        jobs: list[_Job] = []
        idle: list[DiskCopy] = []  # disks QEMU does not have (attached at the next start)
        for n, c in enumerate(copies):
            node = node_of(c.name)
            if node not in present:
                idle.append(c)
                continue
            bitmap = since.get(c.name)
            jobs.append(_Job(c, node, f"{_BACKUP_NODE}-{n}",
                             bitmap if bitmap is not None and bitmap in present[node] else None))
        made: list[Path] = []
        try:
            self._backup_jobs(sock, jobs, tracking, made)
            changed: dict[str, frozenset[int]] = {}
            qemu_img = require_tool("qemu-img", "qemu-utils") if any(
                j.delta for j in jobs) else ""
            for job in jobs:
                if job.delta is None:
                    continue
                changed[job.copy.name] = dirty_chunks(run(
                    [qemu_img, "map", "--output=json", "-f", "qcow2", str(job.delta)]).stdout)
                run([qemu_img, "convert", "-q", "-f", "qcow2", "-O", "raw", str(job.delta),
                     str(job.copy.dest)])
            clone_all(idle)  # the guest cannot write them: a plain copy is of this instant
        except BaseException:
            self.drop_tracking_at(sock, tracking, [j.node for j in jobs])
            raise
        finally:
            for path in made:
                path.unlink(missing_ok=True)
        method = ("blockdev-backup (dirty bitmap)" if changed and len(changed) == len(jobs)
                  else "blockdev-backup (dirty bitmap for " + ", ".join(sorted(changed)) + ")"
                  if changed else "blockdev-backup")
        return Captured(f"online: QEMU blockdev-backup point in time ({note})", method,
                        changed=changed, tracking=tracking)

    def _bitmaps(self, sock: Path) -> dict[str, set[str]]:
        """Every disk QEMU has (the root drive by its id, data disks by node name) with the
        names of its dirty bitmaps."""
        found: dict[str, set[str]] = {}
        for device in qmp(sock, "query-block"):
            inserted = device.get("inserted") or {}
            if not inserted:
                continue
            key = device.get("device") or inserted.get("node-name") or ""
            bitmaps = inserted.get("dirty-bitmaps") or device.get("dirty-bitmaps", [])
            found[str(key)] = {str(b["name"]) for b in bitmaps}
        return found

    def _backup_jobs(self, sock: Path, jobs: list[_Job], tracking: str,
                     made: list[Path]) -> None:
        """One transaction for all disks: per disk a new dirty bitmap (``tracking``, 4 MiB
        granules = the backup's chunks) and its backup job, so every bitmap and every copy
        start at exactly the same point in time. Full copies go to sparse raw files,
        incremental ones (``since``) to qcow2 files holding only the dirty clusters."""
        if not jobs:
            return
        qemu_img = require_tool("qemu-img", "qemu-utils")
        added: list[str] = []
        actions: list[dict[str, Any]] = []
        try:
            for job in jobs:
                size = job.copy.source.stat().st_size
                if job.since is None:
                    with job.copy.dest.open("xb") as f:
                        f.truncate(size)
                    target, fmt = job.copy.dest, "raw"
                    sync: dict[str, str] = {"sync": "full"}
                else:
                    job.delta = job.copy.dest.with_name(job.copy.dest.name + ".qcow2")
                    made.append(job.delta)
                    run([qemu_img, "create", "-q", "-f", "qcow2", str(job.delta), str(size)])
                    target, fmt = job.delta, "qcow2"
                    sync = {"sync": "bitmap", "bitmap": job.since, "bitmap-mode": "never"}
                qmp(sock, "blockdev-add", {
                    "driver": fmt, "node-name": job.target, "discard": "unmap",
                    "detect-zeroes": "unmap", "file": {"driver": "file", "filename": str(target)},
                })
                added.append(job.target)
                actions += [
                    {"type": "block-dirty-bitmap-add", "data": {
                        "node": job.node, "name": tracking, "granularity": CHUNK,
                        "persistent": False}},
                    {"type": "blockdev-backup", "data": {
                        "job-id": job.target, "device": job.node, "target": job.target,
                        "auto-dismiss": False, **sync}},
                ]
            qmp(sock, "transaction", {"actions": actions})
            failure: BaseException | None = None
            for job in jobs:  # every job waited for (or cancelled) before its node goes
                try:
                    if failure is not None:
                        with contextlib.suppress(HostFailure):
                            qmp(sock, "job-cancel", {"id": job.target})
                    wait_job(sock, job.target)
                except BaseException as exc:
                    failure = failure or exc
            if failure is not None:
                raise failure
        finally:
            for node in added:
                with contextlib.suppress(HostFailure):
                    qmp(sock, "blockdev-del", {"node-name": node})

    def drop_tracking(self, spec: InstanceSpec, tracking: str) -> None:
        if self._state(spec) in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
            nodes = [ROOT] + [node_of(d.name) for d in spec.data_disks]
            self.drop_tracking_at(self._sock(spec), tracking, nodes)

    @staticmethod
    def drop_tracking_at(sock: Path, tracking: str, nodes: Sequence[str]) -> None:
        for node in nodes:
            with contextlib.suppress(HostFailure):
                qmp(sock, "block-dirty-bitmap-remove", {"node": node, "name": tracking})


def _boot(source: Path) -> dict[str, Any]:
    """How QEMU ran when the state was saved: its ``-m`` and the data disks it had (a disk
    added to a running microvm VM waits for the next start). Empty for snapshots made before
    it was kept: the spec's memory and every disk."""
    try:
        found = json.loads((source / BOOT).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def dirty_chunks(map_json: bytes) -> frozenset[int]:
    """The chunk indexes a ``qemu-img map --output=json`` of a backing-less image has
    allocated (data or zero clusters: what the bitmap backup wrote)."""
    found: set[int] = set()
    for extent in json.loads(map_json):
        if extent.get("present") or extent.get("data"):
            start, length = int(extent["start"]), int(extent["length"])
            found.update(range(start // CHUNK, (start + length - 1) // CHUNK + 1))
    return frozenset(found)
