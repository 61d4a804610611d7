"""Client calls for users, instance owners and the caller's identity."""

from __future__ import annotations

from corral.client.client import CorralClient
from corral.wire.models import InstanceModel
from corral.wire.users import (
    AddUserRequest,
    SetOwnerRequest,
    SetPasswordRequest,
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
