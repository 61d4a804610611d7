"""Snapshot hooks of the QEMU driver.

* Disk: QMP ``stop`` (QEMU drains and flushes the disk), a copy-on-write clone of the raw
  root image, ``cont``. The guest is first asked (agent ``sync``) to write its page cache.
* Memory: while paused, QMP ``snapshot-save`` writes QEMU's state (RAM and devices) into a
  small qcow2 side file per snapshot (``vmstate.qcow2``, hot-added as a block node that no
  device uses: a raw root disk cannot hold a vmstate). Revert starts QEMU on the reverted
  disk with its vCPUs stopped (``-S``: the guest never runs a single instruction of a fresh
  boot, so it cannot touch the disk), ``snapshot-load``s the state into it, then resumes:
  the guest continues where it was.
* Online backup: ``blockdev-backup`` (sync=full) to a temporary raw file, a point-in-time
  copy made by QEMU's copy-before-write filter while the guest keeps running.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from pathlib import Path
from typing import Any

from corral.backup.engine import CHUNK_SIZE as CHUNK  # = the dirty bitmaps' granularity
from corral.domain.errors import Conflict, HostFailure
from corral.domain.instance import InstanceSpec
from corral.drivers.base import RuntimeState
from corral.drivers.qemu.driver import QemuDriver
from corral.drivers.qemu.qmp import qmp
from corral.drivers.snapshots import Captured, MemoryNotRestored, clone, replace_disk
from corral.host.run import require_tool, run
from corral.templates.image import TemplateImage

VMSTATE = "vmstate.qcow2"
TAG = "corral"
_NODE = "corral-vmstate"
_BACKUP_NODE = "corral-backup"


def wait_job(sock: Path, job_id: str, timeout: float = 3600.0) -> None:
    """Poll a QMP job (auto-dismiss off) to its end; dismiss it; HostFailure on its error."""
    deadline = time.monotonic() + timeout
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
        if time.monotonic() > deadline:
            with contextlib.suppress(HostFailure):
                qmp(sock, "job-cancel", {"id": job_id})
            raise HostFailure(f"QEMU job {job_id} did not finish within {timeout:g} s")
        time.sleep(0.05)


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

    def take(self, spec: InstanceSpec, dest: Path, memory: bool) -> Captured:
        state = self._state(spec)
        up = state in (RuntimeState.RUNNING, RuntimeState.SUSPENDED)
        if memory and not up:
            raise Conflict(f"{spec.name} is {state.value}: a memory snapshot needs it running")
        synced = up and not memory and state is RuntimeState.RUNNING and self._guest_sync(spec)
        with self._paused(spec) if up else contextlib.nullcontext():
            method = clone(spec.disk_path, dest / "root.img")
            if memory:
                qemu_img = require_tool("qemu-img", "qemu-utils")
                run([qemu_img, "create", "-q", "-f", "qcow2", str(dest / VMSTATE), "1M"])
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
        self, spec: InstanceSpec, template: TemplateImage, source: Path, memory: bool
    ) -> None:
        if self._state(spec) in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
            self.driver.stop(spec, force=True, timeout=0)
        replace_disk(spec, source / "root.img")
        if not memory:
            return
        self.driver.start(spec, template, paused=True)  # -S: not one guest instruction yet
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

    def capture_disk(self, spec: InstanceSpec, dest: Path, since: str | None = None) -> Captured:
        state = self._state(spec)
        if state not in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
            return Captured("stopped (consistent)", clone(spec.disk_path, dest))
        synced = state is RuntimeState.RUNNING and self._guest_sync(spec)
        sock = self._sock(spec)
        size = spec.disk_path.stat().st_size
        tracking = f"corral-{secrets.token_hex(6)}"
        incremental = since is not None and since in self._bitmaps(sock)
        note = "guest synced" if synced else "crash-consistent: no guest agent"
        if not incremental:
            with dest.open("xb") as f:
                f.truncate(size)
            self._backup_job(sock, dest, "raw", tracking, {"sync": "full"})
            return Captured(f"online: QEMU blockdev-backup point in time ({note})",
                            "blockdev-backup", tracking=tracking)
        # Only the chunks the bitmap marks, into a qcow2 (its allocation map says which),
        # then to a sparse raw file of the whole size for the chunk engine.
        delta = dest.with_name(dest.name + ".qcow2")
        qemu_img = require_tool("qemu-img", "qemu-utils")
        run([qemu_img, "create", "-q", "-f", "qcow2", str(delta), str(size)])
        try:
            self._backup_job(sock, delta, "qcow2", tracking,
                             {"sync": "bitmap", "bitmap": since or "", "bitmap-mode": "never"})
            changed = dirty_chunks(run([qemu_img, "map", "--output=json", "-f", "qcow2",
                                        str(delta)]).stdout)
            run([qemu_img, "convert", "-q", "-f", "qcow2", "-O", "raw", str(delta), str(dest)])
        finally:
            delta.unlink(missing_ok=True)
        return Captured(f"online: QEMU blockdev-backup point in time ({note})",
                        "blockdev-backup (dirty bitmap)", changed=changed, tracking=tracking)

    def _bitmaps(self, sock: Path) -> set[str]:
        """Names of the dirty bitmaps on the root disk."""
        for device in qmp(sock, "query-block"):
            if device.get("device") == "root":
                found = device.get("inserted", {}).get("dirty-bitmaps") or device.get(
                    "dirty-bitmaps", [])
                return {str(b["name"]) for b in found}
        return set()

    def _backup_job(self, sock: Path, dest: Path, fmt: str, tracking: str,
                    sync: dict[str, str]) -> None:
        """One transaction: a new dirty bitmap (``tracking``, 4 MiB granules = the backup's
        chunks) and the backup job, so the bitmap starts at exactly the copy's point in
        time. On failure the new bitmap is removed again."""
        qmp(sock, "blockdev-add", {
            "driver": fmt, "node-name": _BACKUP_NODE, "discard": "unmap",
            "detect-zeroes": "unmap", "file": {"driver": "file", "filename": str(dest)},
        })
        try:
            qmp(sock, "transaction", {"actions": [
                {"type": "block-dirty-bitmap-add", "data": {
                    "node": "root", "name": tracking, "granularity": CHUNK,
                    "persistent": False}},
                {"type": "blockdev-backup", "data": {
                    "job-id": _BACKUP_NODE, "device": "root", "target": _BACKUP_NODE,
                    "auto-dismiss": False, **sync}},
            ]})
            try:
                wait_job(sock, _BACKUP_NODE)
            except BaseException:
                self.drop_tracking_at(sock, tracking)
                raise
        finally:
            qmp(sock, "blockdev-del", {"node-name": _BACKUP_NODE})

    def drop_tracking(self, spec: InstanceSpec, tracking: str) -> None:
        if self._state(spec) in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
            self.drop_tracking_at(self._sock(spec), tracking)

    @staticmethod
    def drop_tracking_at(sock: Path, tracking: str) -> None:
        with contextlib.suppress(HostFailure):
            qmp(sock, "block-dirty-bitmap-remove", {"node": "root", "name": tracking})


def dirty_chunks(map_json: bytes) -> frozenset[int]:
    """The chunk indexes a ``qemu-img map --output=json`` of a backing-less image has
    allocated (data or zero clusters: what the bitmap backup wrote)."""
    found: set[int] = set()
    for extent in json.loads(map_json):
        if extent.get("present") or extent.get("data"):
            start, length = int(extent["start"]), int(extent["length"])
            found.update(range(start // CHUNK, (start + length - 1) // CHUNK + 1))
    return frozenset(found)
