"""Wire models of remotes (pairing) and migrations, between CLI, daemon and peer daemons."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from corral.domain.statuses import MigrationStatus


class AddRemoteRequest(BaseModel):
    name: str
    url: str
    token: str
    fingerprint: str | None = None  # given out of band; else trust on first use (shown)


class RemoteModel(BaseModel):
    name: str
    url: str
    fingerprint: str
    created_at: str


class PairingInfo(BaseModel):
    """What a host tells a peer that wants to pair with it."""

    node: str
    url: str | None
    fingerprint: str


class JoinRequest(BaseModel):
    """Pair both ways: this host adds ``url`` as remote ``name`` and asks it to add us back."""

    name: str
    url: str
    token: str
    fingerprint: str | None = None
    as_name: str | None = None  # what the peer calls us (default: our node name)


class MigrateRequest(BaseModel):
    target: str
    mode: Literal["auto", "live", "offline"] = "auto"
    bandwidth: int | None = Field(default=None, ge=1, description="bytes per second")
    downtime_ms: int = Field(default=100, ge=1, le=60000)
    together: bool = False
    """Part of moving a set (bulk migrate, evacuation, restore): an affinity placement
    group's instances still on the source will follow, so they do not refuse the target."""


class ResolveRequest(BaseModel):
    """An admin's decision on an unresolved migration: which copy lives on."""
    keep: Literal["source", "target"]


class MigrationModel(BaseModel):
    id: str
    direction: str
    instance: str
    instance_id: int | None
    kind: str
    peer: str
    path: str
    status: MigrationStatus
    phase: str
    operation: str | None
    details: dict[str, Any]
    error: str | None
    created_at: str
    updated_at: str


class NicTransfer(BaseModel):
    index: int
    network: str
    mac: str
    addresses: list[str]
    antispoof: bool = True


class SnapshotTransfer(BaseModel):
    """A snapshot row; its files (``snapshots/<id>/…`` beside the root disk) follow as
    ``PUT …/disk?file=`` frames."""

    id: str
    name: str
    parent: str | None
    memory: bool
    consistency: str
    method: str
    created_at: str


class DataDiskTransfer(BaseModel):
    """A data disk; its image follows as ``PUT …/disk?file=<name>.img`` frames."""

    name: str
    idx: int
    size: int
    file_size: int
    mount: str | None = None
    pending_size: int | None = None  # a container's ext4 grow due at its next start


class IncomingRequest(BaseModel):
    """Source → target: reserve the instance here and prepare to receive it."""

    migration_id: str
    source_node: str
    name: str
    id: int
    kind: str
    template: str
    template_version: str
    resources: dict[str, Any]
    privileged: bool
    nics: list[NicTransfer]
    disk_size: int
    disk_allocated: int
    files_size: int
    path: Literal["live", "copy"]
    idmap_start: int | None = None
    lease_seconds: float = Field(default=15.0, ge=1.0, le=600.0)
    snapshots: list[SnapshotTransfer] = []  # oldest first
    snapshot_head: str | None = None
    source_cert: str | None = None  # live: the source's certificate, pinned by the streams
    data_disks: list[DataDiskTransfer] = []
    boot_memory: int | None = None  # live VM: the source QEMU's -m (the RAM layout to match)
    live_disks: list[str] | None = None
    """Live VM: the data disks the source's QEMU has, mirrored over NBD (the target's QEMU
    starts with exactly these); the others wait for the next start and move as files.
    None: all of them."""


class IncomingReply(BaseModel):
    migration_id: str
    id: int
    nbd_host: str | None = None
    nbd_port: int | None = None
    nbd_export: str | None = None  # the root disk's export
    nbd_exports: dict[str, str] | None = None  # every disk's export, by disk name ("root")
    migrate_uri: str | None = None
    stream_tls: bool = False  # live: the NBD and RAM streams are TLS, pinned both ways


class CommitRequest(BaseModel):
    start: bool  # copy path: start the instance on the target (it ran on the source)
    restore: bool = False  # with start: from the checkpoint sent with its files (CRIU)


class CommitReply(BaseModel):
    state: str
    resumed_at: float  # wall clock on the target when the guest ran again
    criu_restore_ms: float | None = None  # checkpoint path: CRIU's own restore time
    restore_phases: dict[str, float] = {}  # checkpoint path: where the restore's time went (ms)
    received_at: float | None = None  # wall clock on the target when the commit arrived
