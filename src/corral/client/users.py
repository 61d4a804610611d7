"""Client calls for users, instance owners and the caller's identity."""

from __future__ import annotations

from corral.client.client import CorralClient
from corral.wire.models import InstanceModel
from corral.wire.users import (
    AddUserRequest,
    AuditEntryModel,
    CreateTokenRequest,
    NewTokenModel,
    SetOwnerRequest,
    SetPasswordRequest,
    TokenModel,
    UserModel,
    UserTokenModel,
    WhoAmIModel,
)


class UserCalls:
    def __init__(self, client: CorralClient) -> None:
        self.c = client

    def whoami(self) -> WhoAmIModel:
        return self.c._model(WhoAmIModel, "GET", "/api/v1/whoami")

    def users(self) -> list[UserModel]:
        return self.c._models(UserModel, "GET", "/api/v1/users")

    def add(self, name: str, role: str = "owner") -> UserTokenModel:
        """The new user and its token (shown once)."""
        return self.c._model(UserTokenModel, "POST", "/api/v1/users",
                             json=AddUserRequest(name=name, role=role).model_dump())

    def rotate_token(self, name: str) -> UserTokenModel:
        """A new token for ``name``; the old one stops working."""
        return self.c._model(UserTokenModel, "POST", f"/api/v1/users/{name}/token")

    def set_password(self, name: str, password: str) -> None:
        """Set ``name``'s web console password."""
        self.c._request_empty("PUT", f"/api/v1/users/{name}/password",
                              json=SetPasswordRequest(password=password).model_dump())

    def remove(self, name: str) -> None:
        self.c._request_empty("DELETE", f"/api/v1/users/{name}")

    def set_owner(self, ref: str, owner: str | None) -> InstanceModel:
        return self.c._model(InstanceModel, "PUT", f"/api/v1/instances/{ref}/owner",
                             json=SetOwnerRequest(owner=owner).model_dump())

    # Scoped tokens and the audit log ---------------------------------------------------
    def create_token(self, user: str | None, read_only: bool,
                     instances: list[str] | None) -> NewTokenModel:
        body = CreateTokenRequest(user=user, read_only=read_only, instances=instances)
        return self.c._model(NewTokenModel, "POST", "/api/v1/tokens", json=body.model_dump())

    def tokens(self) -> list[TokenModel]:
        return self.c._models(TokenModel, "GET", "/api/v1/tokens")

    def revoke_token(self, token_id: str) -> None:
        self.c._request_empty("DELETE", f"/api/v1/tokens/{token_id}")

    def audit(self, **filters: str | int | None) -> list[AuditEntryModel]:
        params = {k: v for k, v in filters.items() if v is not None}
        return self.c._models(AuditEntryModel, "GET", "/api/v1/audit", params=params)
