"""Queries for storage pools and instance disks (SQLite)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, select, update

from corral.domain.errors import Conflict, NotFound
from corral.domain.pools import PoolConfig
from corral.state.db import open_database
from corral.state.hotpath import HotPath
from corral.state.storagemodels import DiskRow, PoolRow


@dataclass(frozen=True)
class PoolRecord:
    config: PoolConfig
    default: bool


@dataclass(frozen=True)
class DiskRecord:
    instance_id: int
    name: str
    idx: int
    pool: str
    size: int
    pending_size: int | None = None
    mount: str | None = None
    """Data disks of containers: the path inside (None: /mnt/<name>)."""

    @property
    def root(self) -> bool:
        return self.idx == 0


def _pool(row: PoolRow) -> PoolRecord:
    return PoolRecord(
        PoolConfig(name=row.name, driver=row.driver, path=Path(row.path),
                   source=Path(row.source) if row.source else None, size=row.size),
        row.is_default,
    )


def _disk(row: DiskRow) -> DiskRecord:
    return DiskRecord(row.instance_id, row.name, row.idx, row.pool, row.size, row.pending_size,
                      row.mount)


class StorageStore:
    def __init__(self, path: Path) -> None:
        self._sessions = open_database(path)
        self._hot = HotPath(path)

    # Pools ------------------------------------------------------------------------------
    def list_pools(self) -> list[PoolRecord]:
        with self._sessions() as s:
            return [_pool(r) for r in s.scalars(select(PoolRow).order_by(PoolRow.name))]

    def get_pool(self, name: str) -> PoolRecord:
        with self._sessions() as s:
            row = s.get(PoolRow, name)
            if row is None:
                known = ", ".join(p.config.name for p in self.list_pools()) or "none"
                raise NotFound(f"no storage pool '{name}'; pools: {known}")
            return _pool(row)

    def default_pool(self) -> PoolRecord | None:
        with self._sessions() as s:
            row = s.scalars(select(PoolRow).where(PoolRow.is_default)).first()
            return None if row is None else _pool(row)

    def insert_pool(self, config: PoolConfig, default: bool = False) -> PoolRecord:
        with self._sessions.begin() as s:
            if s.get(PoolRow, config.name) is not None:
                raise Conflict(f"storage pool '{config.name}' already exists")
            s.add(PoolRow(
                name=config.name, driver=config.driver, path=str(config.path),
                source=str(config.source) if config.source else None, size=config.size,
                is_default=default, created_at=datetime.now(UTC).replace(tzinfo=None),
            ))
        return PoolRecord(config, default)

    def delete_pool(self, name: str) -> None:
        with self._sessions.begin() as s:
            s.execute(delete(PoolRow).where(PoolRow.name == name))

    # Disks ------------------------------------------------------------------------------
    def disks(self, instance_id: int) -> list[DiskRecord]:
        with self._sessions() as s:
            rows = s.scalars(select(DiskRow).where(DiskRow.instance_id == instance_id)
                             .order_by(DiskRow.idx))
            return [_disk(r) for r in rows]

    def disks_with_pools(self, instance_id: int) -> list[tuple[DiskRecord, PoolConfig]]:
        """Each disk of an instance with its pool's configuration: one query on every start
        and stop, in plain SQL (hotpath.py says why)."""
        rows = self._hot.all(
            "SELECT d.instance_id, d.name, d.idx, d.pool, d.size, d.pending_size, d.mount, "
            "p.driver, p.path, p.source, p.size FROM instance_disks AS d "
            "JOIN storage_pools AS p ON p.name = d.pool WHERE d.instance_id = ? ORDER BY d.idx",
            (instance_id,))
        return [(DiskRecord(*r[:7]), PoolConfig(name=r[3], driver=r[7], path=Path(r[8]),
                                                source=Path(r[9]) if r[9] else None,
                                                size=r[10])) for r in rows]

    def disks_in_pool(self, pool: str) -> list[DiskRecord]:
        with self._sessions() as s:
            return [_disk(r) for r in s.scalars(select(DiskRow).where(DiskRow.pool == pool))]

    def data_disk_bytes(self) -> int:
        """The size of every data disk on this host (a pending grow counted at its target)."""
        with self._sessions() as s:
            return sum(max(r.size, r.pending_size or 0)
                       for r in s.scalars(select(DiskRow).where(DiskRow.idx != 0)))

    def insert_disk(self, disk: DiskRecord) -> None:
        with self._sessions.begin() as s:
            s.add(DiskRow(instance_id=disk.instance_id, name=disk.name, idx=disk.idx,
                          pool=disk.pool, size=disk.size, pending_size=disk.pending_size,
                          mount=disk.mount))

    def set_disk_size(self, instance_id: int, name: str, size: int,
                      pending: int | None) -> None:
        with self._sessions.begin() as s:
            s.execute(update(DiskRow)
                      .where(DiskRow.instance_id == instance_id, DiskRow.name == name)
                      .values(size=size, pending_size=pending))

    def delete_disk(self, instance_id: int, name: str) -> None:
        with self._sessions.begin() as s:
            s.execute(delete(DiskRow).where(DiskRow.instance_id == instance_id,
                                            DiskRow.name == name))

    def delete_disks(self, instance_id: int) -> None:
        with self._sessions.begin() as s:
            s.execute(delete(DiskRow).where(DiskRow.instance_id == instance_id))
