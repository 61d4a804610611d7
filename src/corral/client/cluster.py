"""Client calls for cluster membership (beside ``CorralClient``, same plumbing)."""

from __future__ import annotations

from corral.client.client import CorralClient
from corral.wire.cluster import (
    ClusterInitRequest,
    ClusterJoinRequest,
    ClusterStatus,
    EvacuateRequest,
    GroupCreateRequest,
    GroupModel,
    MemberModel,
    RestoreRequest,
)
from corral.wire.models import OperationModel


def status(c: CorralClient) -> ClusterStatus:
    return c._model(ClusterStatus, "GET", "/api/v1/cluster")


def init(c: CorralClient, request: ClusterInitRequest) -> ClusterStatus:
    return c._model(ClusterStatus, "POST", "/api/v1/cluster/init", json=request.model_dump())


def join(c: CorralClient, request: ClusterJoinRequest) -> ClusterStatus:
    return c._model(ClusterStatus, "POST", "/api/v1/cluster/join", json=request.model_dump())


def leave(c: CorralClient) -> None:
    c._request_empty("POST", "/api/v1/cluster/leave")


def members(c: CorralClient) -> list[MemberModel]:
    return c._models(MemberModel, "GET", "/api/v1/cluster/members")


def cordon(c: CorralClient, node: str, cordoned: bool) -> None:
    c._request_empty("PUT" if cordoned else "DELETE", f"/api/v1/cluster/members/{node}/cordon")


def evacuate(c: CorralClient, node: str, request: EvacuateRequest) -> OperationModel:
    return c._model(OperationModel, "POST", f"/api/v1/cluster/members/{node}/evacuate",
                    json=request.model_dump())


def restore(c: CorralClient, node: str, request: RestoreRequest) -> OperationModel:
    return c._model(OperationModel, "POST", f"/api/v1/cluster/members/{node}/restore",
                    json=request.model_dump())


def group_create(c: CorralClient, request: GroupCreateRequest) -> GroupModel:
    return c._model(GroupModel, "POST", "/api/v1/groups", json=request.model_dump())


def groups(c: CorralClient) -> list[GroupModel]:
    return c._models(GroupModel, "GET", "/api/v1/groups")


def group(c: CorralClient, name: str) -> GroupModel:
    return c._model(GroupModel, "GET", f"/api/v1/groups/{name}")


def group_delete(c: CorralClient, name: str) -> None:
    c._request_empty("DELETE", f"/api/v1/groups/{name}")
