"""Users and their API tokens: made, rotated, removed; a token resolved to its caller."""

from __future__ import annotations

import secrets

from corral.domain.users import TOKEN_PREFIX, Caller, Role, token_hash, validate_user_name
from corral.state.userstore import UserRecord, UserStore


class UserService:
    def __init__(self, store: UserStore) -> None:
        self.store = store

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

    def authenticate(self, token: str) -> Caller | None:
        """The user a token belongs to (None: no user has it)."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        found = self.store.by_token_hash(token_hash(token))
        return None if found is None else Caller(found.name, found.role)


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)
