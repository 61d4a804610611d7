"""Roles, callers and token hashing (pure)."""

from __future__ import annotations

import hashlib

import pytest

from corral.domain.errors import InvalidInput
from corral.domain.users import DAEMON_TOKEN, LOCAL_ROOT, Caller, Role, token_hash


def test_roles_parse_and_callers_describe_themselves() -> None:
    assert Role.parse("owner") is Role.OWNER and Role.parse("admin") is Role.ADMIN
    with pytest.raises(InvalidInput, match="role 'Owner' is not one of"):
        Role.parse("Owner")
    assert Caller("alice", Role.OWNER).describe() == "user 'alice' (owner)"
    assert not Caller("alice", Role.OWNER).admin
    assert LOCAL_ROOT.admin and DAEMON_TOKEN.admin and not LOCAL_ROOT.user


def test_token_hash_is_sha256_hex() -> None:
    assert token_hash("crl_abc") == hashlib.sha256(b"crl_abc").hexdigest()
