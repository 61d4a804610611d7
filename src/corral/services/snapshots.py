"""Snapshots: a tree of generations per instance, each a directory of copy-on-write files.

Every snapshot is a self-contained point-in-time copy (``<instance dir>/snapshots/<id>/``),
not a delta on its parent, so deleting a generation in the middle only re-parents its
children in the tree: nothing they need is removed. The instance's *head* is the snapshot
its present state descends from; a new snapshot hangs below it, and reverting moves it, so
"revert to an old one and snapshot again" branches.
"""

from __future__ import annotations

import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from corral.domain.errors import Conflict, InvalidInput, Unsupported
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.lifecycle import State
from corral.drivers.snapshots import (
    MemoryNotRestored,
    SnapshotHooks,
    device_changes,
    record_devices,
)
from corral.services.instances import InstanceService
from corral.services.operations import OperationContext
from corral.state.backupstore import BackupStore, SnapshotRecord
from corral.state.store import InstanceRecord, OperationRecord, utcnow

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class SnapshotTree:
    instance: str
    snapshots: list[SnapshotRecord]  # oldest first
    head: str | None


def snapshot_dir(spec: InstanceSpec, snapshot_id: str) -> Path:
    """Beside the root disk (in its pool's volume directory), so a snapshot is a reflink
    where the pool has them; storage removes the directory with the disk."""
    return spec.disk_path.parent / "snapshots" / snapshot_id


class SnapshotService:
    def __init__(
        self, instances: InstanceService, store: BackupStore, hooks: dict[Kind, SnapshotHooks]
    ) -> None:
        self.instances = instances
        self.store = store
        self.hooks = hooks

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

        def work(ctx: OperationContext) -> None:
            snapshot_id = secrets.token_hex(8)
            dest = snapshot_dir(spec, snapshot_id)
            dest.mkdir(parents=True)
            try:
                ctx.progress(0.1, "memory and disk" if memory else "disk (copy-on-write)")
                captured = hooks.take(spec, dest, memory)
                record_devices(spec, dest)  # a memory revert needs the same devices
                parent = self.tree(rec.name).head
                self.store.insert_snapshot(SnapshotRecord(
                    snapshot_id, rec.id, name, parent, memory, captured.consistency,
                    captured.method, utcnow()))
            except BaseException:
                shutil.rmtree(dest, ignore_errors=True)
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
        template = self.instances.templates.get(rec.template)

        def work(ctx: OperationContext) -> None:
            ctx.progress(0.1, "reverting memory and disk" if memory else "reverting disk")
            try:
                hooks.revert(spec, template, source, memory)
            except MemoryNotRestored:
                self.store.set_head(rec.id, snap.id)  # the disk is the snapshot's
                raise
            finally:
                state = self.instances.driver(rec.kind).status(spec).state.value
                self.instances.store.set_state(
                    rec.id, State.RUNNING if state == "running" else
                    State.SUSPENDED if state == "suspended" else State.STOPPED)
            self.store.set_head(rec.id, snap.id)
            self.instances.events.publish("snapshot.reverted", instance=rec.name, snapshot=name)

        return self.instances.ops.submit("revert", rec.name, work)

    def delete(self, ref: str, name: str) -> None:
        rec = self.instances.store.get_instance(ref)
        snap = self.store.snapshot(rec.id, name)
        holder = self.instances.ops.locks.holder(rec.name)
        if holder is not None:
            raise Conflict(f"{rec.name} is busy with operation {holder}")
        shutil.rmtree(snapshot_dir(self.instances.spec(rec), snap.id), ignore_errors=True)
        self.store.delete_snapshot(snap)
