"""/api/v1/remotes, /api/v1/host/pairing|join, /api/v1/instances/{ref}/migrate|migration/resolve,
/api/v1/migrations (records) and /api/v1/migrations/incoming (the peer protocol)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from corral.api import convert
from corral.api.deps import corral
from corral.services.core import Corral
from corral.services.types import MigrationRecord, RemoteRecord
from corral.wire.migration import (
    AddRemoteRequest,
    CommitReply,
    CommitRequest,
    IncomingReply,
    IncomingRequest,
    JoinRequest,
    MigrateRequest,
    MigrationModel,
    PairingInfo,
    RemoteModel,
    ResolveRequest,
)
from corral.wire.models import OperationModel

router = APIRouter(tags=["migration"])
App = Annotated[Corral, Depends(corral)]
INCOMING = "/api/v1/migrations/incoming"


def _iso(moment: object) -> str:
    return "" if moment is None else f"{moment.isoformat()}Z"  # type: ignore[attr-defined]


def remote_model(rec: RemoteRecord) -> RemoteModel:
    return RemoteModel(name=rec.name, url=rec.url, fingerprint=rec.fingerprint,
                       created_at=_iso(rec.created_at))


def migration_model(rec: MigrationRecord) -> MigrationModel:
    return MigrationModel(
        id=rec.id, direction=rec.direction, instance=rec.instance,
        instance_id=rec.instance_id, kind=rec.kind, peer=rec.peer, path=rec.path,
        status=rec.status, phase=rec.phase, operation=rec.operation, details=rec.details,
        error=rec.error, created_at=_iso(rec.created_at), updated_at=_iso(rec.updated_at),
    )


# Pairing ------------------------------------------------------------------------------
@router.get("/api/v1/remotes", response_model=list[RemoteModel])
def list_remotes(app: App) -> list[RemoteModel]:
    return [remote_model(r) for r in app.remotes.list()]


@router.post("/api/v1/remotes", response_model=RemoteModel, status_code=201)
def add_remote(body: AddRemoteRequest, app: App) -> RemoteModel:
    return remote_model(app.remotes.add(body.name, body.url, body.token, body.fingerprint))


@router.delete("/api/v1/remotes/{name}", status_code=204)
def remove_remote(name: str, app: App) -> Response:
    app.remotes.remove(name)
    return Response(status_code=204)


@router.get("/api/v1/host/pairing", response_model=PairingInfo)
def pairing(app: App) -> PairingInfo:
    return app.remotes.pairing_info()


@router.post("/api/v1/host/join", response_model=RemoteModel, status_code=201)
def join(body: JoinRequest, app: App) -> RemoteModel:
    request = AddRemoteRequest(name=body.name, url=body.url, token=body.token,
                               fingerprint=body.fingerprint)
    return remote_model(app.remotes.join(request, body.as_name))


# Migrations ---------------------------------------------------------------------------
@router.post("/api/v1/instances/{ref}/migrate", response_model=OperationModel, status_code=202)
def migrate(ref: str, body: MigrateRequest, app: App) -> OperationModel:
    return convert.operation(app.migrations.migrate(ref, body))


@router.post("/api/v1/instances/{ref}/migration/resolve", response_model=MigrationModel)
def resolve_migration(ref: str, body: ResolveRequest, app: App) -> MigrationModel:
    """Decide an unresolved migration of ``ref`` (its target unreachable after the commit
    was asked): keep the source's copy or the target's. The target's answer, if it gives
    one, wins (409 when it contradicts the choice)."""
    return migration_model(app.migrations.resolve(ref, body.keep))


@router.get("/api/v1/migrations", response_model=list[MigrationModel])
def list_migrations(
    app: App, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[MigrationModel]:
    return [migration_model(r) for r in app.migrations.store.list_migrations(limit)]


# The peer protocol (a source corrald drives the target through these) ------------------
@router.post(INCOMING, response_model=IncomingReply, status_code=201)
def reserve(body: IncomingRequest, request: Request, app: App) -> IncomingReply:
    server = request.scope.get("server") or ("127.0.0.1", 0)
    host = str(server[0]) if server[0] else "127.0.0.1"
    return app.migrations.reserve(body, host)


@router.get(INCOMING + "/{mid}", response_model=MigrationModel)
def incoming_status(mid: str, app: App) -> MigrationModel:
    return migration_model(app.migrations.status(mid))


@router.post(INCOMING + "/{mid}/heartbeat", status_code=204)
def heartbeat(mid: str, app: App) -> Response:
    app.migrations.heartbeat(mid)
    return Response(status_code=204)


@router.put(INCOMING + "/{mid}/disk")
async def receive_disk(mid: str, request: Request, app: App, file: str | None = None,
                       size: int = 0) -> dict[str, int]:
    body = await request.body()
    from starlette.concurrency import run_in_threadpool

    written = await run_in_threadpool(app.migrations.receive_disk, mid, body, file, size)
    return {"written": written}


@router.put(INCOMING + "/{mid}/files", status_code=204)
async def receive_files(mid: str, request: Request, app: App) -> Response:
    body = await request.body()
    from starlette.concurrency import run_in_threadpool

    await run_in_threadpool(app.migrations.receive_files, mid, body)
    return Response(status_code=204)


@router.post(INCOMING + "/{mid}/commit", response_model=CommitReply)
def commit(mid: str, body: CommitRequest, app: App) -> CommitReply:
    return app.migrations.commit(mid, body.start, body.restore)


@router.delete(INCOMING + "/{mid}", status_code=204)
def abort(mid: str, app: App, reason: str = "aborted by the source") -> Response:
    app.migrations.abort(mid, reason)
    return Response(status_code=204)


@router.get("/api/v1/migrations/{ref}", response_model=MigrationModel)
def show_migration(ref: str, app: App) -> MigrationModel:
    return migration_model(app.migrations.get(ref))
