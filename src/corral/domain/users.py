"""Users and callers: who may use the API, and as what (pure: no I/O).

Three roles. An ``admin`` may do everything; an ``operator`` manages every instance,
network, storage pool, backup and operation but not users, roles or host policy; an
``owner`` may see and back up its own instances and restore its own backups
(``services/access.py`` holds the whole policy).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from corral.domain.errors import InvalidInput
from corral.domain.names import validate_name

TOKEN_PREFIX = "crl_"
"""User tokens start with it, so a leaked one is recognisable (and never the daemon's)."""


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    OWNER = "owner"

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls(value)
        except ValueError:
            raise InvalidInput(f"role '{value}' is not one of: admin, operator, owner") from None


@dataclass(frozen=True)
class Caller:
    """The identity a request runs as."""

    name: str
    role: Role
    user: bool = True
    """False for the built-in identities (the Unix socket, the daemon's own token)."""
    token: str | None = None
    """The id of the scoped token the request presented (None: the user's own token)."""
    read_only: bool = False
    """A read-only token: no call that changes anything."""
    instances: frozenset[str] | None = None
    """A token limited to these instances (None: every instance the user may reach)."""

    @property
    def admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def sees_all(self) -> bool:
        """Admins and operators see and manage every instance, backup and operation."""
        return self.role in (Role.ADMIN, Role.OPERATOR)

    @property
    def scoped(self) -> bool:
        return self.read_only or self.instances is not None

    def describe(self) -> str:
        who = f"user '{self.name}' ({self.role.value})" if self.user else self.name
        if not self.scoped:
            return who
        limits = (["read-only"] if self.read_only else []) + (
            [f"limited to {', '.join(sorted(self.instances))}"]
            if self.instances is not None else [])
        return f"{who} with token {self.token} ({', '.join(limits)})"


LOCAL_ROOT = Caller("local root (Unix socket)", Role.ADMIN, user=False)
DAEMON_TOKEN = Caller("the daemon's API token", Role.ADMIN, user=False)


def validate_user_name(name: str) -> str:
    """User names are DNS labels like instance names (a web panel may put them in URLs)."""
    return validate_name(name, "user")


def token_hash(token: str) -> str:
    """What the database keeps of a token: its SHA-256 (tokens are 256 random bits, so a
    plain hash is enough; no salt or slow hash is needed against guessing)."""
    return hashlib.sha256(token.encode()).hexdigest()


TOKEN_ID_PREFIX = "tok-"


def validate_token_scope(instances: Iterable[str] | None) -> frozenset[str] | None:
    """The instance names a token is limited to (None: not limited); each a valid name."""
    if instances is None:
        return None
    if not instances:
        raise InvalidInput("a token limited to instances needs at least one instance name")
    return frozenset(validate_name(name, "instance") for name in instances)
