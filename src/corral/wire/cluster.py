"""Wire models of /api/v1/cluster (membership) and the cordon flag."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from corral.domain.bulk import DEFAULT_PARALLEL, MAX_PARALLEL


class ClusterInitRequest(BaseModel):
    etcd: list[str] = Field(default_factory=list)
    """Endpoints of an existing etcd (http(s)://HOST:PORT); empty: start a local member."""
    etcd_listen: str | None = None
    """The local member's client address HOST:PORT (default 127.0.0.1:12379)."""
    etcd_peer_listen: str | None = None
    """The local member's peer address HOST:PORT (default 127.0.0.1:12380)."""
    offline_after: int = Field(default=10, ge=3, le=3600)
    """Seconds without a renewal after which a member shows offline."""
    etcd_ca: str | None = None
    """With ``etcd``: the PEM CA certificate its https endpoints are checked against."""
    etcd_cert: str | None = None
    """With ``etcd``: the PEM client certificate Corral presents (etcd --client-cert-auth)."""
    etcd_key: str | None = None
    """With ``etcd``: that certificate's PEM key (unencrypted)."""


class ClusterJoinRequest(BaseModel):
    url: str
    token: str
    fingerprint: str | None = None


class ClusterStatus(BaseModel):
    clustered: bool
    node: str
    endpoints: list[str]
    members: int
    online: int
    leader: str | None
    offline_after: int | None
    local_etcd: bool
    etcd: dict[str, str]
    """Each etcd endpoint's health, as this host sees it."""
    error: str | None = None
    tls: bool = False
    """Whether every etcd endpoint is spoken to over TLS."""
    client_cert: bool = False
    """Whether Corral presents a client certificate to etcd."""
    warnings: list[str] = Field(default_factory=list)
    """E.g. "etcd without TLS"."""


class MemberModel(BaseModel):
    node: str
    online: bool
    cordoned: bool
    url: str | None
    fingerprint: str | None
    joined_at: str
    facts: dict[str, Any]


class EtcdCredentials(BaseModel):
    ca: str
    cert: str
    key: str


class JoinInfo(BaseModel):
    endpoints: list[str]
    offline_after: int
    node: str
    etcd_tls: EtcdCredentials | None = None
    """The CA and a client certificate (with its key) for the cluster's etcd: issued for
    the joining host by the cluster CA, or a copy of the member's own."""


class EvacuateRequest(BaseModel):
    stop: bool = False
    """Stop where they are the instances no other member can take (else: their item fails)."""
    parallel: int = Field(default=DEFAULT_PARALLEL, ge=1, le=MAX_PARALLEL)


class RestoreRequest(BaseModel):
    parallel: int = Field(default=DEFAULT_PARALLEL, ge=1, le=MAX_PARALLEL)


class GroupCreateRequest(BaseModel):
    name: str
    rule: str
    """``affinity`` (all on one member) or ``anti-affinity`` (never two on one member)."""


class GroupMemberModel(BaseModel):
    instance: str
    node: str


class GroupModel(BaseModel):
    name: str
    rule: str
    created_at: str
    members: list[GroupMemberModel] = Field(default_factory=list)
    """Its instances and the member each is on (or is being created on)."""
