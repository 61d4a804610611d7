"""/api/v1/users (admin-only: add, list, remove, rotate a token, set a console password) and
/api/v1/whoami."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from corral.api.deps import Policy, caller, corral
from corral.domain.users import Caller
from corral.services.core import Corral
from corral.services.types import TokenRecord, UserRecord
from corral.wire.users import (
    AddUserRequest,
    CreateTokenRequest,
    NewTokenModel,
    SetPasswordRequest,
    TokenModel,
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
    return WhoAmIModel(name=who.name, role=who.role.value, user=who.user, token=who.token,
                       read_only=who.read_only,
                       instances=None if who.instances is None else sorted(who.instances))


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


def _token(t: TokenRecord) -> TokenModel:
    return TokenModel(id=t.id, user=t.user, read_only=t.read_only,
                      instances=None if t.instances is None else list(t.instances),
                      created_at=t.created_at.isoformat() + "Z")


@router.post("/tokens", response_model=NewTokenModel, status_code=201)
def create_token(body: CreateTokenRequest, app: App, policy: Policy) -> NewTokenModel:
    """A scoped token (read-only and/or limited to instances) for a user: any user for an
    administrator, itself for an owner."""
    user = policy.token_for(body.user)
    record, secret = app.users.create_token(user, body.read_only, body.instances)
    return NewTokenModel(token=_token(record), secret=secret)


@router.get("/tokens", response_model=list[TokenModel])
def list_tokens(app: App, policy: Policy) -> list[TokenModel]:
    return [_token(t) for t in app.users.list_tokens(policy.tokens_filter())]


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: str, app: App, policy: Policy) -> Response:
    policy.token(app.users.get_token(token_id).user, token_id)
    app.users.revoke_token(token_id)
    return Response(status_code=204)
