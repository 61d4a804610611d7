"""/api/v1/groups: placement groups (affinity, anti-affinity)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from corral.api.deps import corral
from corral.domain.groups import Group
from corral.services.core import Corral
from corral.wire.cluster import GroupCreateRequest, GroupMemberModel, GroupModel

router = APIRouter(prefix="/api/v1/groups", tags=["cluster"])
App = Annotated[Corral, Depends(corral)]


def group_model(g: Group) -> GroupModel:
    return GroupModel(name=g.name, rule=g.rule.value, created_at=g.created_at,
                      members=[GroupMemberModel(instance=i, node=n)
                               for i, n in sorted(g.members.items())])


@router.get("", response_model=list[GroupModel])
def list_groups(app: App) -> list[GroupModel]:
    return [group_model(g) for g in app.groups.list()]


@router.post("", response_model=GroupModel, status_code=201)
def create_group(body: GroupCreateRequest, app: App) -> GroupModel:
    return group_model(app.groups.create(body.name, body.rule))


@router.get("/{name}", response_model=GroupModel)
def show_group(name: str, app: App) -> GroupModel:
    return group_model(app.groups.get(name))


@router.delete("/{name}", status_code=204)
def delete_group(name: str, app: App) -> Response:
    app.groups.delete(name)
    return Response(status_code=204)
