"""What every host agrees on, behind one Protocol: members and their published facts, names
and ids, the instances each member publishes, the cordon flags, a leader.

Two implementations: ``EtcdClusterStore`` (``etcdstore.py``) for a cluster and
``LocalClusterStore`` (``local.py``) for one host, where the local database already is the
whole truth. Services hold a ``ClusterStore`` and never ask which one it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from corral.domain.groups import Group, Rule


@dataclass(frozen=True)
class NodeInfo:
    """How the other members reach a member (its TLS API, pinned by fingerprint)."""

    node: str
    url: str | None
    fingerprint: str | None
    cert_pem: str | None = None
    joined_at: str = ""


@dataclass(frozen=True)
class Member:
    info: NodeInfo
    online: bool
    """It renewed its lease within the offline delay (its facts key still exists)."""
    cordoned: bool
    facts: dict[str, Any] = field(default_factory=dict)
    """What it published last: capacity, commitment, features, version, load, instances."""

    @property
    def node(self) -> str:
        return self.info.node


@dataclass(frozen=True)
class PublishedInstance:
    """An instance as its member published it (enough for `list` on any member)."""

    name: str
    id: int
    kind: str
    state: str
    node: str
    template: str
    resources: dict[str, Any]
    privileged: bool = False
    owner: str | None = None
    created_at: str = ""
    addresses: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    """Its labels: a selector matches instances on every member."""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id, "kind": self.kind, "state": self.state,
                "node": self.node, "template": self.template, "resources": self.resources,
                "privileged": self.privileged, "owner": self.owner,
                "created_at": self.created_at, "addresses": list(self.addresses),
                "labels": self.labels}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PublishedInstance:
        return cls(
            name=str(data["name"]), id=int(data["id"]), kind=str(data["kind"]),
            state=str(data["state"]), node=str(data["node"]), template=str(data["template"]),
            resources=dict(data.get("resources", {})), privileged=bool(data.get("privileged")),
            owner=data.get("owner"), created_at=str(data.get("created_at", "")),
            addresses=tuple(data.get("addresses", ())),
            labels={str(k): str(v) for k, v in dict(data.get("labels") or {}).items()},
        )


@dataclass(frozen=True)
class PublishedTemplate:
    """A template a member holds, as it published it: ``sha256`` is its content digest
    (``templates.artifact.artifact_digest``: over the checksums of its files), which a
    member fetching it checks the artifact's metadata against before importing it."""

    name: str
    node: str
    sha256: str
    size: int
    kinds: tuple[str, ...] = ()
    version: str = ""
    os: str = ""
    arch: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "node": self.node, "sha256": self.sha256,
                "size": self.size, "kinds": list(self.kinds), "version": self.version,
                "os": self.os, "arch": self.arch}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PublishedTemplate:
        return cls(name=str(data["name"]), node=str(data["node"]), sha256=str(data["sha256"]),
                   size=int(data.get("size", 0)),
                   kinds=tuple(str(k) for k in data.get("kinds", ())),
                   version=str(data.get("version", "")), os=str(data.get("os", "")),
                   arch=str(data.get("arch", "")))


@dataclass(frozen=True)
class Reservation:
    """A name (and an id) held for an instance being created on ``node``. ``id`` is the id
    the instance must get; ``None``: the local database chooses (one host)."""

    name: str
    node: str
    id: int | None


class ClusterStore(Protocol):
    """The cluster's shared state (see the module docstring)."""

    @property
    def clustered(self) -> bool:
        """True for a cluster store (what `cluster status` says; services do not branch)."""
        ...

    # Members -----------------------------------------------------------------------------
    def register(self, info: NodeInfo) -> None:
        """Record (or update) how this member is reached."""
        ...

    def unregister(self, node: str) -> None:
        """Forget a member: its entry, facts, names, ids and published instances."""
        ...

    def heartbeat(self, facts: dict[str, Any]) -> bool:
        """Publish this member's facts under its lease, renewing it. True when the lease had
        to be made again (first call, or back after being offline): the caller republishes
        its instances (reconcile)."""
        ...

    def members(self) -> list[Member]:
        ...

    # Names and ids -----------------------------------------------------------------------
    def reserve(self, name: str, node: str, quarantine: timedelta | None) -> Reservation:
        """Hold ``name`` and a free id cluster-wide (Conflict if the name is taken)."""
        ...

    def adopt(self, name: str, node: str, instance_id: int) -> None:
        """Hold ``name`` and exactly ``instance_id`` for an instance that already exists on
        ``node`` (joining the cluster). Conflict if either is another's."""
        ...

    def release(self, name: str, instance_id: int | None, retire: bool) -> None:
        """Give back a reservation; ``retire``: the id stays out of use for the quarantine."""
        ...

    def move(self, name: str, instance_id: int, node: str) -> None:
        """Hand ``name`` (now with ``instance_id``) to ``node``: a migration committed there."""
        ...

    # Published instances -----------------------------------------------------------------
    def publish(self, node: str, instances: list[PublishedInstance], complete: bool) -> None:
        """Publish ``instances`` of ``node``; ``complete``: they are all of them (others of
        ``node`` are withdrawn)."""
        ...

    def withdraw(self, node: str, name: str) -> None:
        ...

    def instances(self, node: str | None = None) -> list[PublishedInstance]:
        """Every published instance (of ``node``), read without a quorum round."""
        ...

    # Placement groups (domain/groups.py) --------------------------------------------------
    def create_group(self, name: str, rule: Rule) -> Group:
        """A new, empty group (Conflict if the name is taken)."""
        ...

    def group(self, name: str) -> Group:
        """The group and its live members (NotFound)."""
        ...

    def groups(self) -> list[Group]:
        ...

    def delete_group(self, name: str) -> None:
        """Forget an empty group (Conflict while it holds instances)."""
        ...

    def join_group(self, name: str, instance: str, node: str,
                   source: str | None = None) -> Group:
        """Put ``instance`` on ``node`` in the group, its rule checked atomically with the
        write (GroupRefused); ``source``: see ``domain.groups.refusal``."""
        ...

    def leave_groups(self, instance: str) -> None:
        """``instance`` is gone (deleted, or its create failed): out of its group."""
        ...

    def group_of(self, instance: str) -> Group | None:
        ...

    # Templates ---------------------------------------------------------------------------
    def publish_templates(self, node: str, templates: list[PublishedTemplate],
                          complete: bool) -> None:
        """Say ``node`` holds ``templates``; ``complete``: only those (others withdrawn)."""
        ...

    def withdraw_template(self, node: str, name: str) -> None:
        ...

    def templates(self, name: str | None = None) -> list[PublishedTemplate]:
        """Every member's published templates (named ``name``)."""
        ...

    # Cordon, leader ----------------------------------------------------------------------
    def set_cordoned(self, node: str, cordoned: bool) -> None:
        ...

    def is_cordoned(self, node: str) -> bool:
        ...

    def leader(self) -> str | None:
        """The member holding the leader lease, taking it if it is free."""
        ...

    def secret(self) -> str | None:
        """The token members present to each other when forwarding (None: one host)."""
        ...

    def locate(self, ref: str) -> str | None:
        """The member holding the instance named or numbered ``ref`` (None: unknown)."""
        ...

    def node_info(self, node: str) -> NodeInfo | None:
        """How ``node`` is reached (None: no such member)."""
        ...

    def close(self) -> None:
        """Stop renewing (facts disappear at once where the store allows it)."""
        ...
