"""Backups of instances into chunk stores, restores, retention, verification, schedules.

A backup is taken from point-in-time copies of every disk (root and data disks, one point in
time for all) the driver's snapshot hooks make while the instance keeps running (CT: freeze
+ fsfreeze + copy-on-write clones + thaw; VM: QEMU blockdev-backup of every disk in one
transaction), then chunked into the target's store; the manifest is committed last.
A restore recreates the data disks (names, sizes, mount paths) in the instance's pool.
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
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from corral.backup.crypto import Codec
from corral.backup.engine import CHUNK_SIZE, DataImage, backup_disks, restore_image
from corral.backup.manifest import DataDiskBackup, InstanceInfo, Manifest
from corral.backup.retention import Retention, select_kept
from corral.backup.store import ChunkStore, VerifyReport
from corral.backup.targets import S3Target, open_target
from corral.domain.errors import Conflict, InvalidInput, NotFound, Unsupported
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.lifecycle import State
from corral.domain.users import LOCAL_ROOT
from corral.drivers.snapshots import ROOT, Captured, DiskCopy, SnapshotHooks
from corral.services.access import Access
from corral.services.instances import InstanceService
from corral.services.operations import OperationContext
from corral.state.backupstore import BackupStore, ScheduleRecord, TargetRecord
from corral.state.store import InstanceRecord, OperationRecord

if TYPE_CHECKING:
    from corral.services.disks import DiskService

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
        self.disks: DiskService | None = None
        """Data disks (services/disks): a restore registers the ones it recreates."""
        self.reports = scratch.parent / "verify-reports"
        self._target_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
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
        self._open(record, create=True)  # refuse unusable targets before recording them
        self.store.add_target(record)
        return record

    def targets(self) -> list[TargetRecord]:
        return self.store.targets()

    def remove_target(self, name: str) -> None:
        self.store.remove_target(name)
        self.store.forget_schedules(target=name)  # a schedule would fail every day

    def remove_schedule(self, instance: str, target: str | None = None) -> None:
        """Stop backing ``instance`` up on schedule; ``target``: only if it goes there."""
        found = [s for s in self.store.schedules() if s.instance == instance]
        if not found or (target is not None and found[0].target != target):
            raise NotFound(f"no backup schedule for '{instance}'"
                           + (f" to '{target}'" if target is not None else ""))
        self.store.remove_schedule(instance)

    def _record(self, target: str, key_file: str | None = None) -> TargetRecord:
        found = self.store.target(target)
        if found is not None:
            return found
        if target.startswith(("/", "s3://", "file://")):
            return TargetRecord(target, target, key_file, None, None)
        raise NotFound(f"no backup target '{target}' (add one with `corral backup target add`)")

    def _open(self, record: TargetRecord, create: bool = False) -> ChunkStore:
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
        record = self._record(target, key_file)
        store = self._open(record, create=True)
        info = InstanceInfo(rec.name, rec.id, rec.kind.value, rec.template,
                            rec.resources.to_dict(), rec.privileged, owner=rec.owner)

        def work(ctx: OperationContext) -> None:
            copies = backup_copies(spec, ctx.id)
            base = self.latest(store, rec.name)
            since = _trackers(base, copies)  # per disk: incremental where it can be
            captured: Captured | None = None
            try:
                ctx.progress(0.02, "point-in-time copy of " + (
                    f"{len(copies)} disks" if len(copies) > 1 else "the disk"))
                captured = hooks.capture_disks(spec, copies, since)
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
                        progress=RateReporter(ctx, "stored", 0.1, 0.9),
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
        store = self._open(self._record(target, key_file))
        return [m for m in store.manifests() if instance is None or m.instance.name == instance]

    def info(self, target: str, backup_id: str, key_file: str | None = None) -> Manifest:
        return self._open(self._record(target, key_file)).manifest(backup_id)

    def verify(self, target: str, backup_ids: list[str] | None = None,
               key_file: str | None = None) -> OperationRecord:
        """Start verifying (all, or the named) backups: every chunk read once, decoded and
        re-hashed. An Operation (a large store takes long; progress in chunks, cancellable);
        its report is kept under the operation's id (``verify_report``)."""
        store = self._open(self._record(target, key_file))  # an unusable target: refused now
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
        record = self._record(target, key_file)
        store = self._open(record)
        with self._locked(record):
            store.delete_manifest(backup_id)
            return store.garbage_collect()[0]

    def prune(self, target: str, instance: str | None, rules: Retention,
              key_file: str | None = None) -> PruneResult:
        if rules.empty:
            raise InvalidInput("prune needs at least one of --keep-last, --keep-daily, "
                               "--keep-weekly")
        record = self._record(target, key_file)
        store = self._open(record)
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

    # Restore -------------------------------------------------------------------------------
    def restore(self, target: str, backup_id: str, as_name: str | None = None,
                key_file: str | None = None, access: Access | None = None) -> OperationRecord:
        """Restore into a new instance (``as_name``, or the original name when no instance
        has it any more), or over the original instance when it exists and is stopped.
        ``access``: the caller's policy (its own backups only, over its own instances only;
        the new instance belongs to the backup's owner)."""
        access = access or Access(LOCAL_ROOT)
        store = self._open(self._record(target, key_file))
        try:
            found: Manifest | None = store.manifest(backup_id)
        except NotFound:
            if access.admin:
                raise
            found = None
        manifest = access.backup(found, backup_id, target)
        source = manifest.instance
        name = as_name or source.name
        try:
            existing = self.instances.get(name)
        except NotFound:
            existing = None
        if existing is not None and as_name is not None:
            raise Conflict(f"an instance named '{as_name}' already exists")
        if existing is not None and not access.restore_over(existing.record):
            raise Conflict(f"an instance named '{name}' exists and is not yours: restore "
                           "--as a new name")
        if existing is not None:
            if existing.record.kind.value != source.kind:
                raise Conflict(f"'{name}' is a {existing.record.kind.value}; the backup is a "
                               f"{source.kind}")
            if existing.state is not State.STOPPED:
                raise Conflict(f"{name} is {existing.state.value}: stop it to restore over "
                               "it, or restore --as a new name")
            rec = existing.record
            self._check_restorable(rec, manifest)

            def in_place(ctx: OperationContext) -> None:
                self._write_disks(ctx, manifest, store, rec)

            return self.instances.ops.submit("restore", name, in_place)
        if manifest.disks and self.disks is None:
            raise Unsupported("this daemon keeps no storage pools: the backup's data disks "
                              "cannot be recreated")
        owner = access.restored_owner(
            source.owner, source.owner is not None and self.instances.store.user_exists(
                source.owner))
        settings = {"disk": f"{manifest.disk_size // 1024}K"}
        for key in ("cpus", "memory"):
            value = source.resources.get(key)
            if value is not None:
                settings[key] = str(value) if key == "cpus" else f"{int(str(value)) // 1024}K"
        create = self.instances.create(name, source.kind, source.template, settings,
                                       privileged=source.privileged, owner=owner)

        def as_new(ctx: OperationContext) -> None:
            ctx.progress(0.0, f"creating {name}")
            done = self.instances.ops.wait(create.id, None)
            if done.status != "success":
                raise Conflict(f"creating '{name}' failed: {done.error}")
            rec = self.instances.store.get_instance(name)
            self.instances.ops.locks.acquire(name, ctx.id, "restore")
            try:
                self._write_disks(ctx, manifest, store, rec)
            except BaseException:  # no half-restored instance is left behind
                self.instances.discard(rec, self.instances.spec(rec))
                raise
            finally:
                self.instances.ops.locks.release(name, ctx.id)

        return self.instances.ops.submit("restore", None, as_new)

    def _check_restorable(self, rec: InstanceRecord, manifest: Manifest) -> None:
        """Refuse (before anything changes) an in-place restore that cannot recreate the
        backup's data disks."""
        present = {d.name for d in self.instances.spec(rec).data_disks}
        wanted = [d.name for d in manifest.disks if d.name not in present]
        if wanted and self.disks is None:
            raise Unsupported("this daemon keeps no storage pools: data disks "
                              f"{', '.join(wanted)} cannot be recreated")

    def _write_disks(self, ctx: OperationContext, manifest: Manifest, store: ChunkStore,
                     rec: InstanceRecord) -> None:
        """Every disk of the backup over the (stopped, locked) instance ``rec``: the data
        disks it lacks are registered (name, size, index, mount path) in its root disk's
        pool; every image is restored beside its disk first, then all are renamed into
        place. A data disk the backup does not have is kept as it is. On failure nothing
        changes (disks registered here go again)."""
        spec = self.instances.spec(rec)
        present = {d.name: d.path for d in spec.data_disks}
        targets: list[tuple[str, Path]] = [(ROOT, spec.disk_path)]
        brought: list[tuple[str, Path]] = []
        written: list[tuple[Path, Path]] = []
        total = max(sum(c.length for d in manifest.all_disks() for c in d.chunks), 1)
        done = 0
        try:
            for disk in manifest.disks:
                if disk.name in present:
                    targets.append((disk.name, present[disk.name]))
                else:
                    targets.append((disk.name, self._bring_back(rec, disk)))
                    brought.append(targets[-1])
            for name, path in targets:
                tmp = path.with_name(f".{path.name}.restore")
                tmp.unlink(missing_ok=True)
                view = manifest.disk(name)
                assert view is not None
                size = sum(c.length for c in view.chunks)
                report = RateReporter(ctx, f"restored {name}:", 0.05 + 0.95 * done / total,
                                      0.95 * size / total)
                written.append((tmp, path))
                restore_image(manifest, store, tmp, report, disk=name)
                done += size
        except BaseException:
            for tmp, _ in written:
                tmp.unlink(missing_ok=True)
            for name, path in brought:
                if self.disks is not None:
                    self.disks.drop(rec, name, path)
            raise
        for tmp, path in written:
            tmp.replace(path)
        for disk in manifest.disks:
            if self.disks is not None:
                self.disks.set_size(rec, disk.name, disk.size)
        kept = [n for n in present if manifest.disk(n) is None]
        ctx.result = (f"restored {len(targets)} disk{'s' if len(targets) > 1 else ''}"
                      + (f"; kept as they are (not in the backup): {', '.join(kept)}"
                         if kept else ""))

    def _bring_back(self, rec: InstanceRecord, disk: DataDiskBackup) -> Path:
        if self.disks is None:
            raise Unsupported(f"data disk '{disk.name}' cannot be recreated: this daemon keeps "
                              "no storage pools")
        return self.disks.bring_back(rec, disk.name, disk.size, disk.mount, disk.index)

    # Schedules -----------------------------------------------------------------------------
    def set_schedule(self, instance: str, target: str, daily_at: str, rules: Retention) -> None:
        self.instances.store.get_instance(instance)
        self._record(target)
        try:
            hour, minute = (int(x) for x in daily_at.split(":"))
            if not (0 <= hour < 24 and 0 <= minute < 60):
                raise ValueError
        except ValueError:
            raise InvalidInput(f"--daily '{daily_at}' is not a time HH:MM") from None
        self.store.set_schedule(ScheduleRecord(
            instance, target, f"{hour:02d}:{minute:02d}", rules.keep_last, rules.keep_daily,
            rules.keep_weekly, None))

    def due(self, now: datetime) -> list[ScheduleRecord]:
        """Schedules whose time today has passed and that have not run since (pure of I/O
        besides reading the table)."""
        found = []
        for s in self.store.schedules():
            hour, minute = (int(x) for x in s.daily_at.split(":"))
            slot = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
            if slot > now:
                slot -= timedelta(days=1)
            if s.last_run is None or s.last_run < slot:
                found.append(s)
        return found

    def run_due(self, now: datetime) -> list[str]:
        """Start the backups that are due (then prune by their rules); operation ids."""
        started = []
        for s in self.due(now):
            self.store.mark_run(s.instance, now)
            try:
                op_id = self.create(s.instance, s.target).id
            except Exception as exc:
                log.warning("scheduled backup of %s failed to start: %s", s.instance, exc)
                continue
            started.append(op_id)
            rules = Retention(s.keep_last, s.keep_daily, s.keep_weekly)
            if not rules.empty:
                threading.Thread(target=self._prune_after, args=(op_id, s, rules),
                                 daemon=True).start()
        return started

    def _prune_after(self, op_id: str, s: ScheduleRecord, rules: Retention) -> None:
        if self.instances.ops.wait(op_id, None).status == "success":
            try:
                self.prune(s.target, s.instance, rules)
            except Exception as exc:
                log.warning("scheduled prune of %s failed: %s", s.instance, exc)


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


class BackupScheduler:
    """corrald's schedule loop: every ``interval`` seconds, start the backups that are due."""

    def __init__(self, backups: BackupService, interval: float = 30.0) -> None:
        self.backups = backups
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="backup-schedule", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.backups.run_due(datetime.now())
            except Exception:
                log.exception("backup schedule run failed")

    def stop(self) -> None:
        self._stop.set()
