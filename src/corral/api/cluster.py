"""/api/v1/cluster: init, join, leave, status, members, cordon."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from corral.api import convert
from corral.api.deps import corral
from corral.services.core import Corral
from corral.wire.cluster import (
    ClusterInitRequest,
    ClusterJoinRequest,
    ClusterStatus,
    JoinInfo,
    MemberModel,
)

router = APIRouter(prefix="/api/v1/cluster", tags=["cluster"])
App = Annotated[Corral, Depends(corral)]


def _status(found: dict[str, Any]) -> ClusterStatus:
    return ClusterStatus(**found)


@router.get("", response_model=ClusterStatus)
def cluster_status(app: App) -> ClusterStatus:
    return _status(app.cluster.status())


@router.post("/init", response_model=ClusterStatus, status_code=201)
def cluster_init(body: ClusterInitRequest, app: App) -> ClusterStatus:
    return _status(app.cluster.init(body.etcd, body.etcd_listen, body.etcd_peer_listen,
                                    body.offline_after))


@router.post("/join", response_model=ClusterStatus, status_code=201)
def cluster_join(body: ClusterJoinRequest, app: App) -> ClusterStatus:
    return _status(app.cluster.join_via(body.url, body.token, body.fingerprint))


@router.get("/join-info", response_model=JoinInfo)
def cluster_join_info(app: App) -> JoinInfo:
    """What a joining host needs (asked by its corrald with this host's admin token)."""
    return JoinInfo(**app.cluster.join_info())


@router.post("/leave", status_code=204)
def cluster_leave(app: App) -> Response:
    app.cluster.leave()
    return Response(status_code=204)


@router.get("/members", response_model=list[MemberModel])
def cluster_members(app: App) -> list[MemberModel]:
    return [convert.member(m) for m in app.cluster.members()]


@router.put("/members/{node}/cordon", status_code=204)
def cordon(node: str, app: App) -> Response:
    app.cluster.set_cordoned(node, True)
    return Response(status_code=204)


@router.delete("/members/{node}/cordon", status_code=204)
def uncordon(node: str, app: App) -> Response:
    app.cluster.set_cordoned(node, False)
    return Response(status_code=204)
