"""A backup's manifest: what instance, which chunks at which offsets, and its figures.

The manifest is the commit record: it is written (atomically) only after every chunk it
names is stored, so a backup interrupted at any point (even kill -9) has no manifest and is
never listed; its orphan chunks are swept by the next garbage collection.

Format 2 adds ``disks``: the instance's data disks (name, size, index, mount path, chunk
list and method each), beside the root disk that keeps the top-level ``disk_size`` and
``chunks`` of format 1. Format 1 manifests (root disk only) read as format 2 without data
disks; a format-2 manifest is refused by older Corral (it would lose the data disks).

The instance record carries its NICs (network name, addresses, MAC, anti-spoofing) and its
bandwidth rules, so that a restore as a new instance (on another host, or after the source
is gone) rebuilds them. A manifest written before that has ``nics`` None: "holds no NICs".
Unknown keys of the instance record are ignored, so later additions stay readable.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from corral.domain.errors import InvalidInput

FORMAT = 2
READABLE = (1, 2)


def new_backup_id(instance: str, when: datetime) -> str:
    return f"{instance}-{when.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class ChunkRef:
    index: int  # offset = index * chunk_size
    name: str
    length: int  # plaintext bytes (the last chunk of an image may be short)


@dataclass(frozen=True)
class InstanceInfo:
    """What is needed to recreate the instance: the same fields its database row has."""

    name: str
    id: int
    kind: str
    template: str
    resources: dict[str, Any]
    privileged: bool = False
    owner: str | None = None  # the user who owned the instance then (sees this backup)
    nics: list[dict[str, Any]] | None = None
    """Its NICs ({index, network, addresses, mac, antispoof}); None: not recorded (older)."""
    bandwidth: list[dict[str, Any]] | None = None
    """Its bandwidth rules ({traffic_class, direction, rate, ceil} in bits/s)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstanceInfo:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class DataDiskBackup:
    """One data disk in a backup: what recreates it (name, size, index, container mount
    path) and its chunks (same chunk size as the root disk's)."""

    name: str
    size: int
    index: int
    chunks: list[ChunkRef]
    mount: str | None = None
    method: str = "hash"

    @property
    def names(self) -> set[str]:
        return {c.name for c in self.chunks}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "index": self.index,
                "mount": self.mount, "method": self.method,
                "chunks": [[c.index, c.name, c.length] for c in self.chunks]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataDiskBackup:
        return cls(name=str(data["name"]), size=int(data["size"]), index=int(data["index"]),
                   chunks=_chunks(data["chunks"]), mount=data.get("mount"),
                   method=str(data.get("method", "hash")))


@dataclass(frozen=True)
class DiskView:
    """Any disk of a backup, the root disk (name ``root``) included."""

    name: str
    size: int
    chunks: list[ChunkRef]
    method: str


@dataclass
class Stats:
    read_bytes: int = 0  # image bytes read and hashed
    zero_bytes: int = 0  # skipped as all-zero (holes)
    new_bytes: int = 0  # plaintext of chunks the store did not have
    stored_bytes: int = 0  # what those chunks took in the store (compressed, sealed)
    reused_bytes: int = 0  # plaintext of chunks already in the store (deduplicated)
    new_chunks: int = 0
    seconds: float = 0.0


@dataclass
class Manifest:
    id: str
    instance: InstanceInfo
    created_at: datetime
    disk_size: int
    chunk_size: int
    chunks: list[ChunkRef]
    parent: str | None = None  # the previous backup this one was incremental to
    encrypted: bool = False
    key_fingerprint: str | None = None
    consistency: str = ""  # how the point-in-time image was taken
    method: str = "hash"  # "hash" (all read, deduplicated by name) or "dirty-bitmap"
    stats: Stats = field(default_factory=Stats)
    format: int = FORMAT
    tracking: str | None = None  # the runtime's change tracker started at this backup
    disks: list[DataDiskBackup] = field(default_factory=list)
    """The data disks (format 2); the root disk is ``disk_size``/``chunks``/``method``."""

    @property
    def key(self) -> str:
        return manifest_key(self.id)

    @property
    def names(self) -> set[str]:
        """Every chunk this backup references, over all its disks."""
        return {c.name for c in self.chunks}.union(*(d.names for d in self.disks))

    def all_disks(self) -> list[DiskView]:
        """The root disk first, then the data disks."""
        return [DiskView("root", self.disk_size, self.chunks, self.method)] + [
            DiskView(d.name, d.size, d.chunks, d.method) for d in self.disks]

    def disk(self, name: str) -> DiskView | None:
        return next((d for d in self.all_disks() if d.name == name), None)

    @property
    def total_size(self) -> int:
        return self.disk_size + sum(d.size for d in self.disks)

    def to_json(self) -> bytes:
        data = asdict(self)
        data["created_at"] = self.created_at.astimezone(UTC).isoformat()
        data["chunks"] = [[c.index, c.name, c.length] for c in self.chunks]
        data["disks"] = [d.to_dict() for d in self.disks]
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            data = json.loads(raw)
            if data.get("format") not in READABLE:
                raise InvalidInput(f"manifest format {data.get('format')} is not supported")
            return cls(
                id=data["id"], instance=InstanceInfo.from_dict(data["instance"]),
                created_at=datetime.fromisoformat(data["created_at"]),
                disk_size=int(data["disk_size"]), chunk_size=int(data["chunk_size"]),
                chunks=_chunks(data["chunks"]),
                parent=data.get("parent"), encrypted=bool(data.get("encrypted")),
                key_fingerprint=data.get("key_fingerprint"),
                consistency=data.get("consistency", ""), method=data.get("method", "hash"),
                stats=Stats(**data.get("stats", {})), tracking=data.get("tracking"),
                disks=[DataDiskBackup.from_dict(d) for d in data.get("disks", [])],
                format=int(data["format"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"unreadable manifest: {exc}") from None


_CHUNK_NAME = re.compile(r"[0-9a-f]{64}")


def _chunks(raw: list[list[Any]]) -> list[ChunkRef]:
    """Chunk names are SHA-256/HMAC hex digests; anything else in a manifest read from a
    target (a path such as ``../../etc/shadow`` would be read into the restored disk) is
    refused."""
    refs = [ChunkRef(int(i), str(n), int(length)) for i, n, length in raw]
    for ref in refs:
        if not _CHUNK_NAME.fullmatch(ref.name) or ref.index < 0 or ref.length < 0:
            raise ValueError(f"bad chunk reference {ref.index} {ref.name[:80]!r}")
    return refs


def manifest_key(backup_id: str) -> str:
    return f"manifests/{backup_id}.json"


def chunk_key(name: str) -> str:
    return f"chunks/{name[:2]}/{name}"
