"""/api/v1/users (admin-only: add, list, remove, rotate a token, set a console password) and
/api/v1/whoami."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from corral.api.deps import caller, corral
from corral.domain.users import Caller
from corral.services.core import Corral
from corral.services.types import UserRecord
from corral.wire.users import (
    AddUserRequest,
    SetPasswordRequest,
    UserModel,
    UserTokenModel,
    WhoAmIModel,
)

router = APIRouter(prefix="/api/v1", tags=["users"])
App = Annotated[Corral, Depends(corral)]


def _user(app: Corral, u: UserRecord) -> UserModel:
    return UserModel(name=u.name, role=u.role.value, created_at=u.created_at.isoformat() + "Z",
                     instances=app.users.store.owned(u.name))


@router.get("/whoami", response_model=WhoAmIModel)
def whoami(who: Annotated[Caller, Depends(caller)]) -> WhoAmIModel:
    return WhoAmIModel(name=who.name, role=who.role.value, user=who.user)


@router.get("/users", response_model=list[UserModel])
def list_users(app: App) -> list[UserModel]:
    return [_user(app, u) for u in app.users.list()]


@router.post("/users", response_model=UserTokenModel, status_code=201)
def add_user(body: AddUserRequest, app: App) -> UserTokenModel:
    user, token = app.users.add(body.name, body.role)
    return UserTokenModel(user=_user(app, user), token=token)


@router.post("/users/{name}/token", response_model=UserTokenModel)
def rotate_token(name: str, app: App) -> UserTokenModel:
    token = app.users.rotate(name)
    return UserTokenModel(user=_user(app, app.users.get(name)), token=token)


@router.delete("/users/{name}", status_code=204)
def remove_user(name: str, app: App) -> Response:
    app.users.remove(name)
    return Response(status_code=204)


@router.put("/users/{name}/password", status_code=204)
def set_password(name: str, body: SetPasswordRequest, app: App) -> Response:
    """Set the user's web console password (its console sessions end)."""
    app.users.set_password(name, body.password)
    return Response(status_code=204)
