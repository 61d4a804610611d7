"""Users, their tokens, instance owners and the caller's identity on the wire."""

from __future__ import annotations

from pydantic import BaseModel, Field


class UserModel(BaseModel):
    name: str
    role: str
    created_at: str
    instances: list[str] = Field(default_factory=list)
    """The instances the user owns."""


class AddUserRequest(BaseModel):
    name: str
    role: str = "owner"


class SetPasswordRequest(BaseModel):
    password: str


class UserTokenModel(BaseModel):
    """A user's new token: shown once (corrald keeps only its hash)."""

    user: UserModel
    token: str


class SetOwnerRequest(BaseModel):
    owner: str | None = None
    """A user's name; None: no owner (administrators only)."""


class WhoAmIModel(BaseModel):
    name: str
    role: str
    user: bool
    """False for the built-in identities (Unix socket, the daemon's token)."""
    token: str | None = None
    """The scoped token the request presented (None: the user's own token)."""
    read_only: bool = False
    instances: list[str] | None = None


class CreateTokenRequest(BaseModel):
    user: str | None = Field(default=None, max_length=63)
    """The user the token is for (an administrator must name one; an owner: itself)."""
    read_only: bool = False
    instances: list[str] | None = Field(default=None, max_length=256)
    """Limit the token to these instances (names)."""


class TokenModel(BaseModel):
    id: str
    user: str
    read_only: bool
    instances: list[str] | None
    created_at: str


class NewTokenModel(BaseModel):
    """A new scoped token: shown once (corrald keeps only its hash)."""

    token: TokenModel
    secret: str


class AuditEntryModel(BaseModel):
    id: int
    at: str
    user: str
    role: str
    token: str | None
    source: str
    method: str
    path: str
    action: str
    instance: str | None
    status: int
    result: str
    message: str | None
