"""/api/v1/storage/pools, and per instance: disks, clone, convert."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from corral.api import convert
from corral.api.deps import corral
from corral.domain.disks import default_mount
from corral.domain.instance import Kind
from corral.domain.sizes import parse_size
from corral.services.core import Corral
from corral.services.disks import DiskChange
from corral.services.types import PoolRecord
from corral.wire.models import OperationModel
from corral.wire.storage import (
    AddDiskRequest,
    CloneRequest,
    ConvertRequest,
    CreatePoolRequest,
    DiskChangeModel,
    DiskModel,
    PoolModel,
    ResizeDiskRequest,
)

router = APIRouter(prefix="/api/v1", tags=["storage"])
App = Annotated[Corral, Depends(corral)]


def _pool(record: PoolRecord, app: Corral) -> PoolModel:
    status = app.storage.status(record)
    config, usage = record.config, status.usage
    return PoolModel(
        name=config.name, driver=config.driver, path=str(config.path),
        source=str(config.source) if config.source else None, cow=status.cow,
        active=status.active, total=usage.total, used=usage.used, free=usage.free,
        default=record.default, volumes=status.volumes,
    )


@router.get("/storage/pools", response_model=list[PoolModel])
def list_pools(app: App) -> list[PoolModel]:
    return [_pool(r, app) for r in app.storage.list_pools()]


@router.get("/storage/pools/{name}", response_model=PoolModel)
def show_pool(name: str, app: App) -> PoolModel:
    return _pool(app.storage.store.get_pool(name), app)


@router.post("/storage/pools", response_model=PoolModel, status_code=201)
def create_pool(body: CreatePoolRequest, app: App) -> PoolModel:
    size = parse_size(body.size) if body.size else None
    return _pool(app.storage.create_pool(body.name, body.driver, body.path, body.source, size), app)


@router.delete("/storage/pools/{name}")
def delete_pool(name: str, app: App) -> dict[str, str]:
    app.storage.delete_pool(name)
    return {"deleted": name}


@router.get("/instances/{ref}/disks", response_model=list[DiskModel])
def list_disks(ref: str, app: App) -> list[DiskModel]:
    rec = app.instances.get(ref).record
    found = []
    for d in app.disks.list(str(rec.id)):
        mount = None
        if not d.record.root and rec.kind is Kind.CT:
            mount = d.record.mount or default_mount(d.record.name)
        found.append(DiskModel(
            name=d.record.name, pool=d.record.pool, path=str(d.path), size=d.size,
            allocated=d.allocated, root=d.record.root, pending_size=d.record.pending_size,
            filesystem=d.filesystem, mount=mount,
        ))
    return found


def _change(change: DiskChange) -> DiskChangeModel:
    return DiskChangeModel(disk=change.disk, applied=change.applied, note=change.note)


@router.post("/instances/{ref}/disks", response_model=DiskChangeModel, status_code=201)
def add_disk(ref: str, body: AddDiskRequest, app: App) -> DiskChangeModel:
    size = parse_size(body.size, "disk size")
    return _change(app.disks.add(ref, body.name, size, body.pool, body.path))


@router.delete("/instances/{ref}/disks/{name}", response_model=DiskChangeModel)
def remove_disk(ref: str, name: str, app: App) -> DiskChangeModel:
    return _change(app.disks.remove(ref, name))


@router.post("/instances/{ref}/disks/{name}/resize", response_model=DiskChangeModel)
def resize_disk(ref: str, name: str, body: ResizeDiskRequest, app: App) -> DiskChangeModel:
    return _change(app.disks.resize(ref, name, parse_size(body.size, "disk size")))


@router.post("/instances/{ref}/clone", response_model=OperationModel, status_code=202)
def clone_instance(ref: str, body: CloneRequest, app: App) -> OperationModel:
    return convert.operation(app.convert.clone(ref, body.name, body.pool,
                                                    nics=not body.no_nics))


@router.post("/instances/{ref}/convert", response_model=OperationModel, status_code=202)
def convert_instance(ref: str, body: ConvertRequest, app: App) -> OperationModel:
    return convert.operation(app.convert.convert(ref, body.to, body.force))
