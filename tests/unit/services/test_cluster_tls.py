"""Membership's TLS part (services/cluster.py): endpoints' schemes, the warning, the round
trip through cluster.json (a file written before TLS still reads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.domain.errors import InvalidInput
from corral.host.etcd import LocalMember
from corral.host.pki import Credentials, TLSFiles
from corral.services.cluster import Membership, _check_endpoints

CREDS = Credentials("ca", "cert", "key")


def test_endpoints_must_share_one_scheme_and_certificates_need_https() -> None:
    _check_endpoints(["https://a:2379", "https://b:2379"], CREDS)
    _check_endpoints(["http://a:2379"], None)
    with pytest.raises(InvalidInput, match="need https://"):
        _check_endpoints(["http://a:2379"], CREDS)
    with pytest.raises(InvalidInput, match="mix http:// and https://"):
        _check_endpoints(["http://a:2379", "https://b:2379"], None)
    with pytest.raises(InvalidInput, match="must be http"):
        _check_endpoints(["a:2379"], None)


def test_membership_round_trip_and_the_plain_endpoints(tmp_path: Path) -> None:
    tls = TLSFiles(tmp_path / "ca.pem", tmp_path / "c.pem", tmp_path / "k.pem")
    member = LocalMember(tmp_path / "etcd", "alpha", "https://127.0.0.1:1", "https://127.0.0.1:2",
                         tmp_path)
    made = Membership(["https://127.0.0.1:1"], 10, member, "2026-01-01T00:00:00Z", tls)
    assert Membership.from_json(made.to_json()) == made
    assert made.plain == []
    assert member.client_files == TLSFiles(tmp_path / "etcd-ca.pem", tmp_path / "client.pem",
                                           tmp_path / "client-key.pem")
    old = {"endpoints": ["http://127.0.0.1:1"], "offline_after": 10, "joined_at": "",
           "local_member": {"data_dir": str(tmp_path), "name": "alpha",
                            "client_url": "http://127.0.0.1:1",
                            "peer_url": "http://127.0.0.1:2"}}
    before_tls = Membership.from_json(old)
    assert before_tls.tls is None and before_tls.local_member is not None
    assert before_tls.local_member.tls is None and before_tls.local_member.client_files is None
    assert before_tls.plain == ["http://127.0.0.1:1"]
