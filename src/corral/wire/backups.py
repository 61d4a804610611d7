"""Wire models of snapshots and backups (shared by api/ and client/)."""

from __future__ import annotations

from pydantic import BaseModel


class SnapshotRequest(BaseModel):
    name: str
    memory: bool = False


class SnapshotModel(BaseModel):
    id: str
    name: str
    parent: str | None
    memory: bool
    consistency: str
    method: str
    created_at: str
    current: bool = False


class SnapshotTreeModel(BaseModel):
    instance: str
    head: str | None
    snapshots: list[SnapshotModel]


class TargetRequest(BaseModel):
    name: str
    url: str
    key_file: str | None = None
    access_key: str | None = None
    secret_key: str | None = None


class TargetModel(BaseModel):
    name: str
    url: str
    encrypted: bool


class BackupRequest(BaseModel):
    instance: str
    target: str
    key_file: str | None = None


class BackupStatsModel(BaseModel):
    read_bytes: int
    zero_bytes: int
    new_bytes: int
    stored_bytes: int
    reused_bytes: int
    new_chunks: int
    seconds: float


class BackupDiskModel(BaseModel):
    name: str  # "root" or a data disk's
    size: int
    chunks: int
    stored: int  # plaintext bytes of its non-zero chunks
    method: str
    mount: str | None = None  # containers' data disks: the path inside


class BackupModel(BaseModel):
    id: str
    instance: str
    instance_id: int
    type: str
    template: str
    created_at: str
    disk_size: int
    chunk_size: int
    chunks: int
    parent: str | None
    encrypted: bool
    consistency: str
    method: str
    stats: BackupStatsModel
    owner: str | None = None
    """The instance's owner when the backup was taken (that user sees the backup)."""
    disks: list[BackupDiskModel] = []
    """Every disk (the root disk first); older backups hold the root disk only."""


class VerifyRequest(BaseModel):
    target: str
    backups: list[str] = []
    key_file: str | None = None


class VerifyModel(BaseModel):
    ok: bool
    backups: int
    chunks_checked: int
    damaged_backups: list[str]
    damaged_chunks: dict[str, str]
    unreadable_manifests: list[str]


class PruneRequest(BaseModel):
    target: str
    instance: str | None = None
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    key_file: str | None = None


class PruneModel(BaseModel):
    kept: list[str]
    deleted: list[str]
    chunks_deleted: int


class RestoreRequest(BaseModel):
    target: str
    as_name: str | None = None
    key_file: str | None = None
    no_nics: bool = False  # a new instance gets none of the backup's NICs


class ScheduleRequest(BaseModel):
    target: str
    daily: str
    tz: str | None = None
    """IANA zone name of ``daily`` (e.g. Europe/Berlin); default: the daemon host's zone."""
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0


class ScheduleModel(BaseModel):
    instance: str
    target: str
    daily: str
    tz: str
    """The IANA zone ``daily`` is in; ``next_run`` and ``last_run`` carry its offset."""
    next_run: str
    keep_last: int
    keep_daily: int
    keep_weekly: int
    last_run: str | None
