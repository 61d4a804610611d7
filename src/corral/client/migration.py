"""Client calls for pairing and migration (kept beside ``CorralClient``, same plumbing)."""

from __future__ import annotations

from corral.client.client import CorralClient
from corral.wire.migration import (
    AddRemoteRequest,
    JoinRequest,
    MigrateRequest,
    MigrationModel,
    PairingInfo,
    RemoteModel,
    ResolveRequest,
)
from corral.wire.models import OperationModel


def list_remotes(c: CorralClient) -> list[RemoteModel]:
    return c._models(RemoteModel, "GET", "/api/v1/remotes")


def add_remote(c: CorralClient, request: AddRemoteRequest) -> RemoteModel:
    return c._model(RemoteModel, "POST", "/api/v1/remotes", json=request.model_dump())


def remove_remote(c: CorralClient, name: str) -> None:
    c._request_empty("DELETE", f"/api/v1/remotes/{name}")


def pairing(c: CorralClient) -> PairingInfo:
    return c._model(PairingInfo, "GET", "/api/v1/host/pairing")


def join(c: CorralClient, request: JoinRequest) -> RemoteModel:
    return c._model(RemoteModel, "POST", "/api/v1/host/join", json=request.model_dump())


def migrate(c: CorralClient, ref: str, request: MigrateRequest) -> OperationModel:
    return c._model(OperationModel, "POST", f"/api/v1/instances/{ref}/migrate",
                    json=request.model_dump())


def list_migrations(c: CorralClient, limit: int = 100) -> list[MigrationModel]:
    return c._models(MigrationModel, "GET", "/api/v1/migrations", params={"limit": limit})


def get_migration(c: CorralClient, ref: str) -> MigrationModel:
    return c._model(MigrationModel, "GET", f"/api/v1/migrations/{ref}")


def resolve(c: CorralClient, ref: str, keep: str) -> MigrationModel:
    return c._model(MigrationModel, "POST", f"/api/v1/instances/{ref}/migration/resolve",
                    json=ResolveRequest.model_validate({"keep": keep}).model_dump())
