"""Snapshots: a tree of generations per instance, each a directory of copy-on-write files.

Every snapshot is a self-contained point-in-time copy (``<instance dir>/snapshots/<id>/``),
not a delta on its parent, so deleting a generation in the middle only re-parents its
children in the tree: nothing they need is removed. The instance's *head* is the snapshot
its present state descends from; a new snapshot hangs below it, and reverting moves it, so
"revert to an old one and snapshot again" branches.

Data disks are in every snapshot: each is cloned beside itself, in its own pool
(``<pool>/volumes/<id>/snapshots/<snapshot id>/<disk>.img``: for disks in the root disk's
pool that is the snapshot's directory), at the same point in time as the root disk, and
``disks.json`` in the snapshot's directory records them (name, size, index, mount, pool). A
revert restores every disk the snapshot has (a disk removed since is registered again); a
disk added after the snapshot is kept as it is (never deleted by a revert) and the operation
says so. A memory revert still needs the same devices (``devices.json``).
"""

from __future__ import annotations

import errno
import json
import re
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from corral.domain.errors import Conflict, HostFailure, InvalidInput, NotFound, Unsupported
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.lifecycle import State
from corral.drivers.snapshots import (
    ROOT,
    DiskCopy,
    MemoryNotRestored,
    SnapshotHooks,
    device_changes,
    record_devices,
)
from corral.services.faults import fault_point
from corral.services.instances import InstanceService
from corral.services.operations import OperationContext
from corral.state.backupstore import BackupStore, SnapshotRecord
from corral.state.database import utcnow
from corral.state.store import InstanceRecord, OperationRecord

if TYPE_CHECKING:
    from corral.services.disks import DiskService
    from corral.services.storage import StorageService

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
DISKS = "disks.json"


@dataclass(frozen=True)
class SnapshotTree:
    instance: str
    snapshots: list[SnapshotRecord]  # oldest first
    head: str | None


@dataclass(frozen=True)
class SnapshotDisk:
    """A data disk as a snapshot recorded it (``disks.json``)."""

    name: str
    size: int
    index: int
    mount: str | None
    pool: str | None


def snapshot_dir(spec: InstanceSpec, snapshot_id: str) -> Path:
    """Beside the root disk (in its pool's volume directory), so a snapshot is a reflink
    where the pool has them; storage removes the directory with the disk."""
    return spec.disk_path.parent / "snapshots" / snapshot_id


def data_copy(disk_dir: Path, snapshot_id: str, name: str) -> Path:
    """A data disk's copy in snapshot ``snapshot_id``, beside the disk (``disk_dir``: its
    volume directory in its pool)."""
    return disk_dir / "snapshots" / snapshot_id / f"{name}.img"


def recorded_disks(source: Path) -> list[SnapshotDisk]:
    """The data disks snapshot ``source`` holds (none for snapshots older than data disks
    in snapshots: those hold the root disk only)."""
    try:
        raw = json.loads((source / DISKS).read_text())
    except FileNotFoundError:
        return []
    return [SnapshotDisk(str(d["name"]), int(d["size"]), int(d["index"]), d.get("mount"),
                         d.get("pool")) for d in raw]


@dataclass(frozen=True)
class RevertPlan:
    copies: list[DiskCopy]  # snapshot copy -> disk, for disks there now
    back: list[tuple[SnapshotDisk, Path]]  # removed since: brought back from this copy
    kept: list[str]  # added after the snapshot: left as they are

    def summary(self, memory: bool = False) -> str:
        """What the revert did; ``memory``: the instance resumed from the snapshot's memory
        (said, or an operator cannot tell it from a disk-only revert, which leaves it
        stopped)."""
        data = [c.name for c in self.copies if c.name != ROOT] + [d.name for d, _ in self.back]
        text = "reverted the root disk" + (f" and data disks {', '.join(data)}" if data else "")
        text += (" and the memory: running again where the snapshot was taken (its processes "
                 "resumed)" if memory else "; left stopped (disk only)")
        if self.back:
            text += f" (registered again: {', '.join(d.name for d, _ in self.back)})"
        if self.kept:
            text += (f"; kept as they are (not in the snapshot): {', '.join(self.kept)}")
        return text


class SnapshotService:
    def __init__(
        self, instances: InstanceService, store: BackupStore, hooks: dict[Kind, SnapshotHooks],
        storage: StorageService | None = None, disks: DiskService | None = None,
    ) -> None:
        self.instances = instances
        self.store = store
        self.hooks = hooks
        self.storage = storage
        self.disks = disks

    def _hooks(self, kind: Kind) -> SnapshotHooks:
        found = self.hooks.get(kind)
        if found is None:
            raise Unsupported(f"this host cannot snapshot {kind.value} instances")
        return found

    def _records(self, rec: InstanceRecord) -> list[SnapshotRecord]:
        """The instance's snapshots; rows whose files are gone (an instance deleted and its
        id reused) are forgotten first."""
        spec = self.instances.spec(rec)
        records = self.store.snapshots(rec.id)
        stale = [r for r in records if not snapshot_dir(spec, r.id).is_dir()]
        for record in stale:
            self.store.delete_snapshot(record)
        return [r for r in records if r not in stale] if stale else records

    def tree(self, ref: str) -> SnapshotTree:
        rec = self.instances.store.get_instance(ref)
        records = self._records(rec)
        head = self.store.head(rec.id)
        return SnapshotTree(rec.name, records, head if any(r.id == head for r in records)
                            else None)

    def create(self, ref: str, name: str, memory: bool = False) -> OperationRecord:
        if not _NAME.match(name):
            raise InvalidInput(
                f"snapshot name '{name}' must be 1-63 letters, digits, '.', '_' or '-'")
        view = self.instances.get(ref)
        rec = view.record
        hooks = self._hooks(rec.kind)
        if any(r.name == name for r in self._records(rec)):
            raise Conflict(f"{rec.name} already has a snapshot named '{name}'")
        if memory:
            reason = hooks.memory_refusal(self.instances.spec(rec))
            if reason is not None:
                raise Unsupported(f"--memory is not possible: {reason}")
            if view.state not in (State.RUNNING, State.SUSPENDED):
                raise Conflict(f"{rec.name} is {view.state.value}: --memory needs it running")
        spec = self.instances.spec(rec)

        pools = {d.name: d.pool for d in self.storage.store.disks(rec.id)} if self.storage else {}

        def work(ctx: OperationContext) -> None:
            snapshot_id = secrets.token_hex(8)
            dest = snapshot_dir(spec, snapshot_id)
            copies = [DiskCopy(ROOT, spec.disk_path, dest / "root.img")] + [
                DiskCopy(d.name, d.path, data_copy(d.path.parent, snapshot_id, d.name))
                for d in spec.data_disks]
            dirs = list(dict.fromkeys([dest] + [c.dest.parent for c in copies]))
            try:
                for directory in dirs:
                    directory.mkdir(parents=True)
                ctx.progress(0.1, "memory and disks" if memory else "disks (copy-on-write)")
                captured = hooks.take(spec, dest, memory, copies)
                fault_point("snapshot.after_capture")  # taken, no row yet
                record_devices(spec, dest)  # a memory revert needs the same devices
                (dest / DISKS).write_text(json.dumps([asdict(SnapshotDisk(
                    d.name, d.path.stat().st_size, d.index, d.mount or None,
                    pools.get(d.name))) for d in spec.data_disks]) + "\n")
                parent = self.tree(rec.name).head
                self.store.insert_snapshot(SnapshotRecord(
                    snapshot_id, rec.id, name, parent, memory, captured.consistency,
                    captured.method, utcnow()))
            except BaseException as exc:
                for directory in dirs:
                    shutil.rmtree(directory, ignore_errors=True)
                if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                    raise HostFailure(
                        f"no space left for snapshot '{name}' of {rec.name} beside its disks "
                        f"({dest.parent}): the pool is full; nothing of it was kept") from exc
                raise
            self.store.set_head(rec.id, snapshot_id)
            self.instances.events.publish("snapshot.created", instance=rec.name, snapshot=name)

        return self.instances.ops.submit("snapshot", rec.name, work)

    def revert(self, ref: str, name: str, disk_only: bool = False) -> OperationRecord:
        """Back to snapshot ``name``: with its memory when it has some (the instance resumes
        there), else (or with ``disk_only``) disk only (the instance is left stopped).

        A memory revert is refused before anything changes when the devices a start would
        give the instance now (data disks, NICs) differ from those at the snapshot: the
        saved state cannot be loaded into a different machine."""
        rec = self.instances.store.get_instance(ref)
        snap = self.store.snapshot(rec.id, name)
        hooks = self._hooks(rec.kind)
        spec = self.instances.spec(rec)
        memory = snap.memory and not disk_only
        source = snapshot_dir(spec, snap.id)
        if memory:
            reason = hooks.memory_refusal(spec)
            if reason is not None:
                raise Unsupported(f"snapshot '{name}' has memory, which {reason}")
            changes = device_changes(spec, source)
            if changes:
                raise Conflict(
                    f"the devices of {rec.name} changed since snapshot '{name}' "
                    f"({', '.join(changes)}): a memory revert needs the same devices; revert "
                    "the disk only with --disk-only, or undo the change")
        plan = self._plan_revert(rec, spec, snap.id, source)
        template = self.instances.templates.get(rec.template)

        def work(ctx: OperationContext) -> None:
            ctx.progress(0.1, "reverting memory and disks" if memory else "reverting disks")
            copies, brought = list(plan.copies), []
            try:
                for disk, copy in plan.back:
                    assert self.disks is not None  # _plan_revert refuses otherwise
                    path = self.disks.bring_back(rec, disk.name, disk.size, disk.mount,
                                                 disk.index, disk.pool)
                    brought.append((disk.name, path))
                    copies.append(DiskCopy(disk.name, copy, path))
                hooks.revert(self.instances.spec(rec), template, source, memory, copies)
            except MemoryNotRestored:
                self.store.set_head(rec.id, snap.id)  # the disk is the snapshot's
                raise
            except BaseException:
                for disk_name, path in brought:
                    if self.disks is not None:
                        self.disks.drop(rec, disk_name, path)
                raise
            finally:
                state = self.instances.driver(rec.kind).status(spec).state.value
                self.instances.store.set_state(
                    rec.id, State.RUNNING if state == "running" else
                    State.SUSPENDED if state == "suspended" else State.STOPPED)
            if self.disks is not None:
                for item in copies[1:]:
                    self.disks.set_size(rec, item.name, item.dest.stat().st_size)
            self.store.set_head(rec.id, snap.id)
            ctx.result = plan.summary(memory)
            self.instances.events.publish("snapshot.reverted", instance=rec.name, snapshot=name,
                                          kept=plan.kept)

        return self.instances.ops.submit("revert", rec.name, work)

    def _plan_revert(self, rec: InstanceRecord, spec: InstanceSpec, snapshot_id: str,
                     source: Path) -> RevertPlan:
        """Which disk comes back from which copy; refused (before anything changes) when a
        copy is missing."""
        now = {d.name: d for d in spec.data_disks}
        copies = [DiskCopy(ROOT, source / "root.img", spec.disk_path)]
        back: list[tuple[SnapshotDisk, Path]] = []
        recorded = recorded_disks(source)
        for disk in recorded:
            if disk.name in now:
                current = now[disk.name].path
                copies.append(DiskCopy(disk.name, data_copy(current.parent, snapshot_id,
                                                            disk.name), current))
                continue
            if self.storage is None or self.disks is None:
                raise Unsupported(f"data disk '{disk.name}' was removed since the snapshot "
                                  "and this daemon keeps no storage pools to bring it back")
            try:
                pool = self.storage.pool(disk.pool or "")
            except NotFound:
                pool = self.storage.pool(next(d.pool for d in self.storage.store.disks(rec.id)
                                              if d.root))
            back.append((disk, data_copy(pool.volume_dir(rec.id), snapshot_id, disk.name)))
        missing = [c.source for c in copies if not c.source.is_file()]
        missing += [copy for _, copy in back if not copy.is_file()]
        if missing:
            raise Conflict("the snapshot is incomplete, missing "
                           + ", ".join(str(m) for m in missing) + "; nothing was changed")
        kept = [n for n in now if n not in {d.name for d in recorded}]
        return RevertPlan(copies, back, kept)

    def delete(self, ref: str, name: str) -> None:
        rec = self.instances.store.get_instance(ref)
        snap = self.store.snapshot(rec.id, name)
        holder = self.instances.ops.locks.holder(rec.name)
        if holder is not None:
            raise Conflict(f"{rec.name} is busy with operation {holder}")
        spec = self.instances.spec(rec)
        shutil.rmtree(snapshot_dir(spec, snap.id), ignore_errors=True)
        for directory in self._copy_dirs(rec, spec, snap.id):  # data disks in other pools
            shutil.rmtree(directory, ignore_errors=True)
        self.store.delete_snapshot(snap)

    def _copy_dirs(self, rec: InstanceRecord, spec: InstanceSpec, snapshot_id: str) -> set[Path]:
        """Every directory that may hold data-disk copies of the snapshot (one per pool)."""
        found = {d.path.parent / "snapshots" / snapshot_id for d in spec.data_disks}
        if self.storage is not None:
            for pool in self.storage.list_pools():
                volumes = self.storage.pool(pool.config.name).volume_dir(rec.id)
                found.add(volumes / "snapshots" / snapshot_id)
        return {d for d in found if d.is_dir()}
