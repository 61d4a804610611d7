"""Restores of backups: over their (stopped) instance, or into a new instance.

Split from the backup service (services/backups.py), which owns targets and chunk stores: a
restore opens the target through it, then writes every disk of the backup beside the disk it
replaces and renames all into place at the end, so that a failure changes nothing. The data
disks a backup has and the instance lacks are recreated (names, sizes, mount paths) in the
instance's pool.

A restore as a new instance makes it with every resource key of the backup and, from
manifests that record them, its NICs (new MACs and addresses, see services/nic_carry) and
bandwidth rules, unless ``--no-nics``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from corral.backup.engine import restore_image
from corral.backup.manifest import DataDiskBackup, Manifest
from corral.backup.store import ChunkStore
from corral.domain.errors import Conflict, Forbidden, NotFound, Unsupported
from corral.domain.lifecycle import State
from corral.domain.resources import Resources, to_settings
from corral.domain.statuses import OperationStatus
from corral.domain.undo import Undo
from corral.domain.users import LOCAL_ROOT
from corral.drivers.snapshots import ROOT
from corral.services import nic_carry
from corral.services.access import Access
from corral.services.backups import BackupService, RateReporter
from corral.services.faults import fault_point
from corral.services.networks import NetworkService
from corral.services.operations import OperationContext
from corral.state.store import InstanceRecord, OperationRecord

if TYPE_CHECKING:
    from corral.services.disks import DiskService

log = logging.getLogger("corral.backups")


class RestoreService:
    def __init__(self, backups: BackupService, disks: DiskService | None,
                 networks: NetworkService | None = None) -> None:
        self.backups = backups
        self.instances = backups.instances
        self.disks = disks
        """Data disks (services/disks): a restore registers the ones it recreates."""
        self.networks = networks
        """NICs and bandwidth rules of a restore as a new instance (services/nic_carry)."""

    def restore(self, target: str, backup_id: str, as_name: str | None = None,
                key_file: str | None = None, access: Access | None = None,
                nics: bool = True) -> OperationRecord:
        """Restore into a new instance (``as_name``, or the original name when no instance
        has it any more), or over the original instance when it exists and is stopped.
        ``access``: the caller's policy (its own backups only, over its own instances only;
        the new instance belongs to the backup's owner). ``nics``: a new instance gets the
        backup's NICs and bandwidth rules (False: none)."""
        access = access or Access(LOCAL_ROOT)
        store = self.backups.open(self.backups.target_record(target, key_file))
        try:
            found: Manifest | None = store.manifest(backup_id)
        except NotFound:
            if access.admin:
                raise
            found = None
        manifest = access.backup(found, backup_id, target)
        source = manifest.instance
        name = as_name or source.name
        if not access.in_scope(name):
            raise Forbidden(f"{access.caller.describe()} may not restore into '{name}'")
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
        carry = nic_carry.of_manifest(source.nics, source.bandwidth) if nics else None
        if carry is not None:
            nic_carry.check(self.networks, carry, source.name)
        # The source gone (no instance has its name), its addresses are taken again where free.
        keep = as_name is None or all(
            r.name != source.name for r in self.instances.store.list_instances())
        settings = {**to_settings(Resources.from_dict(source.resources)),
                    "disk": f"{manifest.disk_size}B"}
        create = self.instances.create(name, source.kind, source.template, settings,
                                       privileged=source.privileged, owner=owner)

        def as_new(ctx: OperationContext) -> None:
            ctx.progress(0.0, f"creating {name}")
            done = self.instances.ops.wait(create.id, None)
            if done.status is not OperationStatus.SUCCESS:
                raise Conflict(f"creating '{name}' failed: {done.error}")
            rec = self.instances.store.get_instance(name)
            self.instances.ops.locks.acquire(name, ctx.id, "restore")
            try:
                with Undo(log) as undo:  # no half-restored instance is left behind
                    undo.push(f"remove the half-restored instance '{name}'",
                              lambda: self.instances.discard(rec, self.instances.spec(rec)))
                    # "creating" until its disks are the backup's: a daemon killed meanwhile
                    # removes it at its next start (InstanceService.reconcile), as a create
                    self.instances.store.set_state(rec.id, State.CREATING)
                    fault_point("restore.after_create")
                    self._write_disks(ctx, manifest, store, rec)
                    made = nic_carry.place(self.networks, rec, carry, keep) if carry else []
                    self.instances.store.set_state(rec.id, State.STOPPED)
            finally:
                self.instances.ops.locks.release(name, ctx.id)
            ctx.result = f"{ctx.result}\n{nic_carry.report(name, carry, made, rec.resources)}"

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
            fault_point("restore.after_write")
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
