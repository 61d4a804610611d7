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
