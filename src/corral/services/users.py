"""Users, their API tokens and console passwords: made, rotated, removed; a token or a
password resolved to its caller.

Passwords are argon2id hashes (argon2-cffi's defaults: RFC 9106's low-memory choice); a
changed password or a removed user ends that user's console sessions at once.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from corral.domain.errors import InvalidInput
from corral.domain.users import TOKEN_PREFIX, Caller, Role, token_hash, validate_user_name
from corral.services.sessions import SessionStore
from corral.state.userstore import UserRecord, UserStore

MIN_PASSWORD = 8
MAX_PASSWORD = 1024


class UserService:
    def __init__(self, store: UserStore, sessions: SessionStore | None = None) -> None:
        self.store = store
        self.sessions = sessions if sessions is not None else SessionStore()
        self.hasher = PasswordHasher()
        self._dummy = self.hasher.hash(secrets.token_urlsafe(16))

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
        """The user a token belongs to (None: no user has it)."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        found = self.store.by_token_hash(token_hash(token))
        return None if found is None else Caller(found.name, found.role)

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
