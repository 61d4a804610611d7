"""/api/v1/cluster: init, join, leave, status, members, cordon, evacuate, restore."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from corral.api import convert
from corral.api.deps import caller, corral
from corral.domain.users import Caller
from corral.services.core import Corral
from corral.services.forwarding import Forwarded
from corral.wire.cluster import (
    ClusterInitRequest,
    ClusterJoinRequest,
    ClusterStatus,
    EvacuateRequest,
    JoinInfo,
    MemberModel,
    RestoreRequest,
)
from corral.wire.models import OperationModel

router = APIRouter(prefix="/api/v1/cluster", tags=["cluster"])
App = Annotated[Corral, Depends(corral)]
Who = Annotated[Caller, Depends(caller)]


def _status(found: dict[str, Any]) -> ClusterStatus:
    return ClusterStatus(**found)


@router.get("", response_model=ClusterStatus)
def cluster_status(app: App) -> ClusterStatus:
    return _status(app.cluster.status())


@router.post("/init", response_model=ClusterStatus, status_code=201)
def cluster_init(body: ClusterInitRequest, app: App) -> ClusterStatus:
    return _status(app.cluster.init(body.etcd, body.etcd_listen, body.etcd_peer_listen,
                                    body.offline_after,
                                    (body.etcd_ca, body.etcd_cert, body.etcd_key)))


@router.post("/join", response_model=ClusterStatus, status_code=201)
def cluster_join(body: ClusterJoinRequest, app: App) -> ClusterStatus:
    return _status(app.cluster.join_via(body.url, body.token, body.fingerprint))


@router.get("/join-info", response_model=JoinInfo)
def cluster_join_info(app: App, node: str | None = None) -> JoinInfo:
    """What a joining host (``node``) needs, its etcd client certificate included (asked
    by its corrald with this host's admin token, over the TLS connection it pinned)."""
    return JoinInfo(**app.cluster.join_info(node))


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


@router.post("/members/{node}/evacuate", response_model=OperationModel, status_code=202)
def evacuate_member(node: str, body: EvacuateRequest, app: App,
                    who: Who) -> OperationModel | Response:
    """Cordon ``node`` and move its instances away (one operation, a child per instance)."""
    return _operation(app.evacuation.evacuate(node, body.stop, body.parallel, who))


@router.post("/members/{node}/restore", response_model=OperationModel, status_code=202)
def restore_member(node: str, body: RestoreRequest, app: App,
                   who: Who) -> OperationModel | Response:
    """Uncordon ``node`` and bring back what its evacuation moved."""
    return _operation(app.evacuation.restore(node, body.parallel, who))


def _operation(done: Any) -> OperationModel | Response:
    """An operation started here, or the answer of the member it was forwarded to."""
    if isinstance(done, Forwarded):
        return Response(done.body, status_code=done.status, media_type="application/json")
    return convert.operation(done)
