"""Wire models for storage pools, disks, clones and conversion (shared by api/ and client/)."""

from __future__ import annotations

from pydantic import BaseModel


class PoolModel(BaseModel):
    name: str
    driver: str
    path: str
    source: str | None
    cow: bool
    active: bool
    total: int
    used: int
    free: int
    default: bool
    volumes: int


class CreatePoolRequest(BaseModel):
    name: str
    driver: str
    path: str | None = None
    source: str | None = None
    """btrfs: a block device or a file (made, sized ``size``, when missing)."""
    size: str | None = None


class DiskModel(BaseModel):
    name: str
    pool: str
    path: str
    size: int
    allocated: int
    root: bool
    pending_size: int | None = None
    """A grow that takes effect at the next start (the instance was running)."""
    filesystem: int | None = None
    """Size of the ext4 filesystem in the image (smaller than ``size`` until it is grown)."""
    mount: str | None = None
    """Containers' data disks: the path inside."""


class AddDiskRequest(BaseModel):
    name: str
    size: str
    pool: str | None = None
    path: str | None = None
    """Containers: where the disk appears inside (default /mnt/NAME)."""


class ResizeDiskRequest(BaseModel):
    size: str


class DiskChangeModel(BaseModel):
    disk: str
    applied: str
    """"now" (the instance was stopped), "live" or "next start"."""
    note: str = ""


class CloneRequest(BaseModel):
    name: str
    pool: str | None = None
    no_nics: bool = False  # the clone gets none of the source's NICs


class ConvertRequest(BaseModel):
    to: str
    force: bool = False
    """Required to convert a running instance (it is stopped and started again)."""
