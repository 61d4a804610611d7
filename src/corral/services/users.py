"""Users, their API tokens and console passwords: made, rotated, removed; a token or a
password resolved to its caller.

Passwords are argon2id hashes (argon2-cffi's defaults: RFC 9106's low-memory choice); a
changed password or a removed user ends that user's console sessions at once.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

from corral.domain.errors import InvalidInput
from corral.domain.users import (
    TOKEN_ID_PREFIX,
    TOKEN_PREFIX,
    Caller,
    Role,
    token_hash,
    validate_token_scope,
    validate_user_name,
)
from corral.services.sessions import SessionStore
from corral.state.database import utcnow
from corral.state.userstore import TokenRecord, TokenStore, UserRecord, UserStore

if TYPE_CHECKING:
    from argon2 import PasswordHasher

MIN_PASSWORD = 8
MAX_PASSWORD = 1024


class UserService:
    def __init__(self, store: UserStore, sessions: SessionStore | None = None,
                 tokens: TokenStore | None = None) -> None:
        self.store = store
        self.sessions = sessions if sessions is not None else SessionStore(store.db)
        self.tokens = tokens or TokenStore(store.db)

    @functools.cached_property
    def hasher(self) -> PasswordHasher:
        """argon2, loaded with the first password (a daemon without console users never
        needs it)."""
        from argon2 import PasswordHasher

        return PasswordHasher()

    @functools.cached_property
    def _dummy(self) -> str:
        """A hash to verify against when the user has none (the same time either way)."""
        return self.hasher.hash(secrets.token_urlsafe(16))

    def add(self, name: str, role: str = "owner") -> tuple[UserRecord, str]:
        """The new user and its token (shown once: only its hash is kept)."""
        validate_user_name(name)
        token = _new_token()
        return self.store.add(name, Role.parse(role), token_hash(token)), token

    def list(self) -> list[UserRecord]:
        return self.store.list_users()

    def get(self, name: str) -> UserRecord:
        return self.store.get(name)

    def rotate(self, name: str) -> str:
        """A new token for ``name``; the old one stops working at once."""
        token = _new_token()
        self.store.set_token_hash(name, token_hash(token))
        return token

    def remove(self, name: str) -> None:
        self.store.remove(name)
        self.sessions.close_user(name)

    def authenticate(self, token: str) -> Caller | None:
        """The user a token belongs to, with the token's limits (None: no user has it)."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        digest = token_hash(token)
        found = self.store.by_token_hash(digest)
        if found is not None:
            return Caller(found.name, found.role)
        scoped = self.tokens.by_hash(digest)
        if scoped is None:
            return None
        record, user = scoped
        return Caller(user.name, user.role, token=record.id, read_only=record.read_only,
                      instances=None if record.instances is None else frozenset(
                          record.instances))

    # Scoped tokens -----------------------------------------------------------------------
    def create_token(self, user: str, read_only: bool,
                     instances: Sequence[str] | None) -> tuple[TokenRecord, str]:
        """A new token of ``user`` limited as asked (shown once: only its hash is kept). The
        caller's right to make it is the policy's (``Access.token_for``)."""
        scope = validate_token_scope(instances)
        if not read_only and scope is None:
            raise InvalidInput("a scoped token is read-only (--read-only), limited to named "
                               "instances (--instance NAME), or both; the user's own token "
                               "already has every right (`corral user token NAME` rotates it)")
        token = _new_token()
        record = TokenRecord(TOKEN_ID_PREFIX + secrets.token_hex(4), user, read_only,
                             None if scope is None else tuple(sorted(scope)), utcnow())
        return self.tokens.add(record, token_hash(token)), token

    def list_tokens(self, user: str | None = None) -> Sequence[TokenRecord]:
        return self.tokens.list_tokens(user)

    def get_token(self, token_id: str) -> TokenRecord:
        return self.tokens.get(token_id)

    def revoke_token(self, token_id: str) -> None:
        self.tokens.remove(token_id)

    # Console passwords ---------------------------------------------------------------
    def set_password(self, name: str, password: str) -> None:
        """Set ``name``'s console password; its open sessions end."""
        if len(password) < MIN_PASSWORD:
            raise InvalidInput(f"a password needs at least {MIN_PASSWORD} characters")
        if len(password) > MAX_PASSWORD:
            raise InvalidInput(f"a password may have at most {MAX_PASSWORD} characters")
        self.store.set_password_hash(name, self.hasher.hash(password))
        self.sessions.close_user(name)

    def check_password(self, name: str, password: str) -> Caller | None:
        """The user if ``password`` is its console password; None otherwise (no such user,
        no password set, or a wrong one -- all take one argon2 verification)."""
        found = self.store.password_hash(name) if len(password) <= MAX_PASSWORD else None
        record, stored = found if found is not None else (None, None)
        from argon2.exceptions import InvalidHashError, VerificationError

        try:
            self.hasher.verify(stored or self._dummy, password)
        except (VerificationError, InvalidHashError):
            return None
        if record is None or stored is None:
            return None
        return Caller(record.name, record.role)

    def caller(self, name: str) -> Caller | None:
        """A console session's user as it is now (its role may have changed); None: gone."""
        found = self.store.password_hash(name)
        return None if found is None else Caller(found[0].name, found[0].role)


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)
