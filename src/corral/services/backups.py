"""Backups of instances into chunk stores, targets, retention, verification.

A backup is taken from point-in-time copies of every disk (root and data disks, one point in
time for all) the driver's snapshot hooks make while the instance keeps running (CT: freeze
+ fsfreeze + copy-on-write clones + thaw; VM: QEMU blockdev-backup of every disk in one
transaction), then chunked into the target's store; the manifest is committed last.
Restores (services/backup_restore.py) and daily schedules (services/backup_schedule.py) go
through this service's targets and stores.
One lock per target serialises backups with prune/delete (garbage collection must not see
the chunks of a backup whose manifest is not committed yet).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from corral.backup.crypto import Codec
from corral.backup.engine import DataImage, backup_disks
from corral.backup.manifest import InstanceInfo, Manifest
from corral.backup.retention import Retention, select_kept
from corral.backup.store import ChunkStore, VerifyReport
from corral.backup.targets import S3Target, open_target
from corral.domain.disks import CHUNK_SIZE
from corral.domain.errors import Conflict, InvalidInput, NotFound
from corral.domain.instance import InstanceSpec, Kind
from corral.drivers.snapshots import ROOT, Captured, DiskCopy, SnapshotHooks
from corral.services import nic_carry
from corral.services.faults import fault_point
from corral.services.instances import InstanceService
from corral.services.networks import NetworkService
from corral.services.operations import OperationContext
from corral.state.backupstore import BackupStore, TargetRecord
from corral.state.store import OperationRecord

log = logging.getLogger("corral.backups")
MiB = 1 << 20
KEPT_REPORTS = 100  # verify reports kept (the newest)


@dataclass(frozen=True)
class PruneResult:
    kept: list[str]
    deleted: list[str]
    chunks_deleted: int


class RateReporter:
    """Turns byte counts into throttled progress with bytes and rate in the phase text."""

    def __init__(self, ctx: OperationContext, verb: str, start: float, span: float) -> None:
        self.ctx, self.verb, self.start, self.span = ctx, verb, start, span
        self.began = time.monotonic()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.2 and done < total:
            return
        self.last = now
        rate = done / max(now - self.began, 1e-6) / MiB
        fraction = done / total if total else 1.0
        self.ctx.progress(
            self.start + self.span * fraction,
            f"{self.verb} {done / MiB:.1f}/{total / MiB:.1f} MiB at {rate:.1f} MiB/s",
        )


SCRATCH = ".backup-"


def scratch_copy(disk: Path, op_id: str, name: str = ROOT) -> Path:
    """A backup's point-in-time copy of a disk lives beside it, in the same pool, so that it
    is a reflink where the pool can (a container stays frozen only for that); deleted when
    the backup ends, and at daemon start after a kill."""
    return disk.parent / (f"{SCRATCH}{op_id}.img" if name == ROOT
                          else f"{SCRATCH}{op_id}-{name}.img")


def backup_copies(spec: InstanceSpec, op_id: str) -> list[DiskCopy]:
    """Every disk of ``spec`` (root first) -> its scratch copy."""
    return [DiskCopy(ROOT, spec.disk_path, scratch_copy(spec.disk_path, op_id))] + [
        DiskCopy(d.name, d.path, scratch_copy(d.path, op_id, d.name)) for d in spec.data_disks]


class BackupService:
    def __init__(
        self, instances: InstanceService, store: BackupStore, hooks: dict[Kind, SnapshotHooks],
        scratch: Path,
    ) -> None:
        self.instances = instances
        self.store = store
        self.hooks = hooks
        self.scratch = scratch
        self.reports = scratch.parent / "verify-reports"
        self._target_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.networks: NetworkService | None = None
        """Set by the wiring: a backup records the instance's NICs and bandwidth rules."""
        scratch.mkdir(parents=True, exist_ok=True)

    def sweep_scratch(self) -> None:
        """At daemon start (pools active): delete a killed daemon's point-in-time copies."""
        for leftover in self.scratch.glob("*.img"):
            leftover.unlink(missing_ok=True)
        for rec in self.instances.store.list_instances():
            with contextlib.suppress(OSError):
                spec = self.instances.spec(rec)
                for where in {spec.disk_path.parent, *(d.path.parent for d in spec.data_disks)}:
                    for leftover in [*where.glob(f"{SCRATCH}*.img*"),
                                     *where.glob(".*.img.restore")]:  # a killed restore's
                        leftover.unlink(missing_ok=True)

    # Targets -----------------------------------------------------------------------------
    def add_target(
        self, name: str, url: str, key_file: str | None = None, access_key: str | None = None,
        secret_key: str | None = None,
    ) -> TargetRecord:
        if not name or "/" in name or ":" in name:
            raise InvalidInput(f"target name '{name}' must be a plain name")
        record = TargetRecord(name, url, key_file, access_key, secret_key)
        self.open(record, create=True)  # refuse unusable targets before recording them
        self.store.add_target(record)
        return record

    def targets(self) -> list[TargetRecord]:
        return self.store.targets()

    def remove_target(self, name: str) -> None:
        self.store.remove_target(name)
        self.store.forget_schedules(target=name)  # a schedule would fail every day

    def target_record(self, target: str, key_file: str | None = None) -> TargetRecord:
        found = self.store.target(target)
        if found is not None:
            return found
        if target.startswith(("/", "s3://", "file://")):
            return TargetRecord(target, target, key_file, None, None)
        raise NotFound(f"no backup target '{target}' (add one with `corral backup target add`)")

    def open(self, record: TargetRecord, create: bool = False) -> ChunkStore:
        target = open_target(record.url, record.access_key, record.secret_key)
        if create and isinstance(target, S3Target):
            target.ensure_bucket()
        store = ChunkStore(target, Codec.from_key_file(
            Path(record.key_file) if record.key_file else None))
        store.open(create=create)
        return store

    @contextlib.contextmanager
    def _locked(self, record: TargetRecord) -> Iterator[None]:
        with self._guard:
            lock = self._target_locks.setdefault(record.url, threading.Lock())
        with lock:
            yield

    # Backups -----------------------------------------------------------------------------
    def create(self, ref: str, target: str, key_file: str | None = None) -> OperationRecord:
        """Start a backup operation."""
        view = self.instances.get(ref)
        rec = view.record
        hooks = self.hooks.get(rec.kind)
        if hooks is None:
            raise InvalidInput(f"this host cannot back up {rec.kind.value} instances")
        spec = self.instances.spec(rec)
        record = self.target_record(target, key_file)
        store = self.open(record, create=True)
        nics, rules = nic_carry.recorded(self.networks, rec.id)
        info = InstanceInfo(rec.name, rec.id, rec.kind.value, rec.template,
                            rec.resources.to_dict(), rec.privileged, owner=rec.owner,
                            nics=nics, bandwidth=rules)

        def work(ctx: OperationContext) -> None:
            copies = backup_copies(spec, ctx.id)
            base = self.latest(store, rec.name)
            since = _trackers(base, copies)  # per disk: incremental where it can be
            captured: Captured | None = None
            try:
                ctx.progress(0.02, "point-in-time copy of " + (
                    f"{len(copies)} disks" if len(copies) > 1 else "the disk"))
                captured = hooks.capture_disks(spec, copies, since)
                fault_point("backup.after_capture")
                stored = RateReporter(ctx, "stored", 0.1, 0.9)

                def progress(done: int, total: int) -> None:
                    fault_point("backup.storing")  # chunks stored, no manifest yet
                    stored(done, total)
                with self._locked(record):
                    previous = self.latest(store, rec.name)
                    if captured.changed and (
                            previous is None or base is None or previous.id != base.id):
                        raise Conflict(f"backup '{base.id if base else '?'}' was deleted "
                                       "during this incremental backup; run it again")
                    manifest = backup_disks(
                        copies[0].dest,
                        [DataImage(d.name, c.dest, d.index, d.mount or None)
                         for d, c in zip(spec.data_disks, copies[1:], strict=True)],
                        store, info, previous=previous, changed=captured.changed,
                        consistency=f"{captured.consistency} [{captured.method}]",
                        progress=progress,
                        tracking=captured.tracking,
                    )
            except BaseException:
                if captured is not None and captured.tracking is not None:
                    hooks.drop_tracking(spec, captured.tracking)  # ``since`` stays valid
                raise
            finally:
                for c in copies:
                    c.dest.unlink(missing_ok=True)
            if base is not None and base.tracking is not None:
                hooks.drop_tracking(spec, base.tracking)  # superseded by this backup's
            s = manifest.stats
            ctx.progress(1.0, f"backup {manifest.id}: {s.new_bytes / MiB:.1f} MiB new of "
                              f"{s.read_bytes / MiB:.1f} MiB read")
            self.instances.events.publish(
                "backup.created", instance=rec.name, backup=manifest.id,
                new_bytes=s.new_bytes, stored_bytes=s.stored_bytes)

        return self.instances.ops.submit("backup", rec.name, work)

    @staticmethod
    def latest(store: ChunkStore, instance: str) -> Manifest | None:
        mine = [m for m in store.manifests() if m.instance.name == instance]
        return mine[-1] if mine else None

    def list_backups(self, target: str, instance: str | None = None,
             key_file: str | None = None) -> list[Manifest]:
        store = self.open(self.target_record(target, key_file))
        return [m for m in store.manifests() if instance is None or m.instance.name == instance]

    def info(self, target: str, backup_id: str, key_file: str | None = None) -> Manifest:
        return self.open(self.target_record(target, key_file)).manifest(backup_id)

    def verify(self, target: str, backup_ids: list[str] | None = None,
               key_file: str | None = None) -> OperationRecord:
        """Start verifying (all, or the named) backups: every chunk read once, decoded and
        re-hashed. An Operation (a large store takes long; progress in chunks, cancellable);
        its report is kept under the operation's id (``verify_report``)."""
        store = self.open(self.target_record(target, key_file))  # unusable: refused now
        for backup_id in backup_ids or []:
            store.manifest(backup_id)  # NotFound before an operation exists

        def work(ctx: OperationContext) -> None:
            last = [0.0]

            def progress(done: int, total: int) -> None:
                now = time.monotonic()
                if now - last[0] >= 0.2 or done == total:
                    last[0] = now
                    ctx.progress(done / total if total else 1.0,
                                 f"verified {done}/{total} chunks")

            report = store.verify(backup_ids or None, progress)
            # A chunk garbage-collected meanwhile is missing only for a backup deleted
            # meanwhile (collection removes unreferenced chunks only): not damage.
            present = set(store.manifest_ids())
            report.damaged_backups = [b for b in report.damaged_backups if b in present]
            self._save_report(ctx.id, report)

        return self.instances.ops.submit("verify", None, work)

    def _save_report(self, op_id: str, report: VerifyReport) -> None:
        self.reports.mkdir(parents=True, exist_ok=True)
        tmp = self.reports / f".{op_id}.json"
        tmp.write_text(json.dumps(dataclasses.asdict(report)))
        tmp.replace(self.reports / f"{op_id}.json")
        kept = sorted(self.reports.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for old in kept[:-KEPT_REPORTS]:
            old.unlink(missing_ok=True)

    def verify_report(self, op_id: str) -> VerifyReport:
        """The report of a finished verify operation."""
        path = self.reports / f"{op_id}.json"
        if "/" in op_id or not path.is_file():
            raise NotFound(f"no verify report for operation '{op_id}' (still running, failed, "
                           "or one of the oldest)")
        return VerifyReport(**json.loads(path.read_text()))

    def delete(self, target: str, backup_id: str, key_file: str | None = None) -> int:
        record = self.target_record(target, key_file)
        store = self.open(record)
        with self._locked(record):
            store.delete_manifest(backup_id)
            return store.garbage_collect()[0]

    def prune(self, target: str, instance: str | None, rules: Retention,
              key_file: str | None = None) -> PruneResult:
        if rules.empty:
            raise InvalidInput("prune needs at least one of --keep-last, --keep-daily, "
                               "--keep-weekly")
        record = self.target_record(target, key_file)
        store = self.open(record)
        with self._locked(record):
            manifests = store.manifests()
            names = {m.instance.name for m in manifests} if instance is None else {instance}
            kept: list[str] = []
            deleted: list[str] = []
            for name in sorted(names):
                mine = [(m.id, m.created_at) for m in manifests if m.instance.name == name]
                keep = select_kept(mine, rules)
                for backup_id, _ in mine:
                    if backup_id in keep:
                        kept.append(backup_id)
                    else:
                        store.delete_manifest(backup_id)
                        deleted.append(backup_id)
            removed = store.garbage_collect()[0] if deleted else 0
        return PruneResult(sorted(kept), sorted(deleted), removed)


def _trackers(base: Manifest | None, copies: list[DiskCopy]) -> dict[str, str]:
    """Per disk, the change tracker the previous backup started, for the disks it has with
    the same size (4 MiB chunks): those a runtime with trackers may copy incrementally."""
    if base is None or base.tracking is None or base.chunk_size != CHUNK_SIZE:
        return {}
    found = {}
    for copy in copies:
        before = base.disk(copy.name)
        if before is not None and before.size == copy.source.stat().st_size:
            found[copy.name] = base.tracking
    return found
