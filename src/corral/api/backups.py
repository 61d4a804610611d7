"""/api/v1/instances/{ref}/snapshots, /api/v1/backups, /api/v1/backup-targets,
/api/v1/backup-schedules."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from corral.api import convert
from corral.api.deps import Policy, corral
from corral.domain.errors import NotFound
from corral.services.access import Access
from corral.services.backup_schedule import Schedule
from corral.services.core import Corral
from corral.services.types import Manifest, Retention, TargetRecord
from corral.wire.backups import (
    BackupDiskModel,
    BackupModel,
    BackupRequest,
    BackupStatsModel,
    PruneModel,
    PruneRequest,
    RestoreRequest,
    ScheduleModel,
    ScheduleRequest,
    SnapshotModel,
    SnapshotRequest,
    SnapshotTreeModel,
    TargetModel,
    TargetRequest,
    VerifyModel,
    VerifyRequest,
)
from corral.wire.models import OperationModel

router = APIRouter(prefix="/api/v1", tags=["snapshots", "backups"])
App = Annotated[Corral, Depends(corral)]


def _backup(m: Manifest) -> BackupModel:
    s = m.stats
    mounts = {d.name: d.mount for d in m.disks}
    return BackupModel(
        id=m.id, instance=m.instance.name, instance_id=m.instance.id, type=m.instance.kind,
        template=m.instance.template, created_at=m.created_at.isoformat(),
        disk_size=m.disk_size, chunk_size=m.chunk_size, chunks=len(m.chunks),
        parent=m.parent, encrypted=m.encrypted, consistency=m.consistency, method=m.method,
        stats=BackupStatsModel(
            read_bytes=s.read_bytes, zero_bytes=s.zero_bytes, new_bytes=s.new_bytes,
            stored_bytes=s.stored_bytes, reused_bytes=s.reused_bytes,
            new_chunks=s.new_chunks, seconds=s.seconds),
        owner=m.instance.owner,
        disks=[BackupDiskModel(name=d.name, size=d.size, chunks=len(d.chunks),
                               stored=sum(c.length for c in d.chunks), method=d.method,
                               mount=mounts.get(d.name)) for d in m.all_disks()],
    )


def _target(t: TargetRecord) -> TargetModel:
    return TargetModel(name=t.name, url=t.url, encrypted=t.key_file is not None)


# Snapshots ------------------------------------------------------------------------------
@router.get("/instances/{ref}/snapshots", response_model=SnapshotTreeModel)
def list_snapshots(ref: str, app: App) -> SnapshotTreeModel:
    tree = app.snapshots.tree(ref)
    return SnapshotTreeModel(instance=tree.instance, head=tree.head, snapshots=[
        SnapshotModel(id=s.id, name=s.name, parent=s.parent, memory=s.memory,
                      consistency=s.consistency, method=s.method,
                      created_at=s.created_at.isoformat(), current=s.id == tree.head)
        for s in tree.snapshots])


@router.post("/instances/{ref}/snapshots", response_model=OperationModel, status_code=202)
def create_snapshot(ref: str, body: SnapshotRequest, app: App) -> OperationModel:
    return convert.operation(app.snapshots.create(ref, body.name, body.memory))


@router.post("/instances/{ref}/snapshots/{name}/revert", response_model=OperationModel,
             status_code=202)
def revert_snapshot(ref: str, name: str, app: App, disk_only: bool = False) -> OperationModel:
    return convert.operation(app.snapshots.revert(ref, name, disk_only))


@router.delete("/instances/{ref}/snapshots/{name}", status_code=204)
def delete_snapshot(ref: str, name: str, app: App) -> Response:
    app.snapshots.delete(ref, name)
    return Response(status_code=204)


# Targets --------------------------------------------------------------------------------
@router.get("/backup-targets", response_model=list[TargetModel])
def list_targets(app: App) -> list[TargetModel]:
    return [_target(t) for t in app.backups.targets()]


@router.post("/backup-targets", response_model=TargetModel, status_code=201)
def add_target(body: TargetRequest, app: App) -> TargetModel:
    return _target(app.backups.add_target(body.name, body.url, body.key_file, body.access_key,
                                          body.secret_key))


@router.delete("/backup-targets/{name}", status_code=204)
def remove_target(name: str, app: App) -> Response:
    app.backups.remove_target(name)
    return Response(status_code=204)


# Backups --------------------------------------------------------------------------------
@router.post("/backups", response_model=OperationModel, status_code=202)
def create_backup(body: BackupRequest, app: App, policy: Policy) -> OperationModel:
    if not policy.admin:  # an owner: its own instance, to a target an admin added
        _owner_target(app, policy, body.target, body.key_file)
        policy.find_instance(app.store.get_instance, body.instance)
    return convert.operation(app.backups.create(body.instance, body.target, body.key_file))


def _owner_target(app: Corral, policy: Access, target: str, key_file: str | None) -> None:
    policy.target(target, app.backups.store.target(target) is not None, key_file)


@router.get("/backups", response_model=list[BackupModel])
def list_backups(app: App, policy: Policy, target: str, instance: str | None = None,
                 key_file: str | None = None) -> list[BackupModel]:
    """The backups in a target (an owner: those of its instances)."""
    _owner_target(app, policy, target, key_file)
    found = policy.backups(app.backups.list_backups(target, instance, key_file))
    return [_backup(m) for m in found]


@router.post("/backups/verify", response_model=OperationModel, status_code=202)
def verify_backups(body: VerifyRequest, app: App) -> OperationModel:
    return convert.operation(app.backups.verify(body.target, body.backups, body.key_file))


@router.get("/backups/verify/{op_id}", response_model=VerifyModel)
def verify_report(op_id: str, app: App) -> VerifyModel:
    r = app.backups.verify_report(op_id)
    return VerifyModel(ok=r.ok, backups=r.backups, chunks_checked=r.chunks_checked,
                       damaged_backups=r.damaged_backups, damaged_chunks=r.damaged_chunks,
                       unreadable_manifests=r.unreadable_manifests)


@router.post("/backups/prune", response_model=PruneModel)
def prune_backups(body: PruneRequest, app: App) -> PruneModel:
    rules = Retention(body.keep_last, body.keep_daily, body.keep_weekly)
    r = app.backups.prune(body.target, body.instance, rules, body.key_file)
    return PruneModel(kept=r.kept, deleted=r.deleted, chunks_deleted=r.chunks_deleted)


@router.get("/backups/{backup_id}", response_model=BackupModel)
def show_backup(backup_id: str, app: App, policy: Policy, target: str,
                key_file: str | None = None) -> BackupModel:
    _owner_target(app, policy, target, key_file)
    if policy.admin:
        return _backup(app.backups.info(target, backup_id, key_file))
    try:
        found: Manifest | None = app.backups.info(target, backup_id, key_file)
    except NotFound:
        found = None
    return _backup(policy.backup(found, backup_id, target))


@router.delete("/backups/{backup_id}", status_code=204)
def delete_backup(backup_id: str, app: App, target: str,
                  key_file: str | None = None) -> Response:
    app.backups.delete(target, backup_id, key_file)
    return Response(status_code=204)


@router.post("/backups/{backup_id}/restore", response_model=OperationModel, status_code=202)
def restore_backup(backup_id: str, body: RestoreRequest, app: App,
                   policy: Policy) -> OperationModel:
    _owner_target(app, policy, body.target, body.key_file)
    return convert.operation(
        app.restores.restore(body.target, backup_id, body.as_name, body.key_file, policy,
                             nics=not body.no_nics))


# Schedules ------------------------------------------------------------------------------
def _schedule(s: Schedule) -> ScheduleModel:
    r = s.record
    return ScheduleModel(instance=r.instance, target=r.target, daily=r.daily_at, tz=s.tz,
                         next_run=s.next_run.isoformat(), keep_last=r.keep_last,
                         keep_daily=r.keep_daily, keep_weekly=r.keep_weekly,
                         last_run=s.last_run.isoformat() if s.last_run else None)


@router.get("/backup-schedules", response_model=list[ScheduleModel])
def list_schedules(app: App) -> list[ScheduleModel]:
    return [_schedule(s) for s in app.schedules.schedules()]


@router.put("/backup-schedules/{instance}", response_model=ScheduleModel)
def set_schedule(instance: str, body: ScheduleRequest, app: App) -> ScheduleModel:
    return _schedule(app.schedules.set_schedule(
        instance, body.target, body.daily,
        Retention(body.keep_last, body.keep_daily, body.keep_weekly), body.tz))


@router.delete("/backup-schedules/{instance}", status_code=204)
def remove_schedule(instance: str, app: App, target: str | None = None) -> Response:
    app.schedules.remove_schedule(instance, target)
    return Response(status_code=204)
