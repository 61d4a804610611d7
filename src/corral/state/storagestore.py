"""Storage pools and instance disks in the daemon's database (the only code building their
queries)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from corral.domain.errors import Conflict, NotFound
from corral.domain.pools import PoolConfig
from corral.state.database import Database, Mapper, Row, to_sql_datetime, utcnow


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


POOLS: Mapper[PoolRecord] = Mapper(
    "storage_pools", ("name", "driver", "path", "source", "size", "is_default"),
    lambda r: PoolRecord(PoolConfig(name=r[0], driver=r[1], path=Path(r[2]),
                                    source=Path(r[3]) if r[3] else None, size=r[4]),
                         bool(r[5])),
    lambda p: (p.config.name, p.config.driver, str(p.config.path),
               str(p.config.source) if p.config.source else None, p.config.size, p.default),
)
"""(``created_at`` is written on insert and not part of the record.)"""

DISKS: Mapper[DiskRecord] = Mapper(
    "instance_disks", ("instance_id", "name", "idx", "pool", "size", "pending_size", "mount"),
    lambda r: DiskRecord(*r),
    lambda d: (d.instance_id, d.name, d.idx, d.pool, d.size, d.pending_size, d.mount),
)

_DISKS_WITH_POOLS = (
    f"SELECT {', '.join('d.' + c for c in DISKS.columns)}, "
    f"{', '.join('p.' + c for c in POOLS.columns)} FROM instance_disks AS d "
    "JOIN storage_pools AS p ON p.name = d.pool WHERE d.instance_id = ? ORDER BY d.idx"
)
_ALL_DISKS_WITH_POOLS = _DISKS_WITH_POOLS.replace(
    "WHERE d.instance_id = ? ORDER BY d.idx", "ORDER BY d.instance_id, d.idx")


class StorageStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._pairs: dict[Row, tuple[DiskRecord, PoolConfig]] = {}

    # Pools ------------------------------------------------------------------------------
    def list_pools(self) -> list[PoolRecord]:
        return [POOLS.load(r) for r in self.db.all(f"{POOLS.select} ORDER BY name")]

    def get_pool(self, name: str) -> PoolRecord:
        row = self.db.one(f"{POOLS.select} WHERE name = ?", (name,))
        if row is None:
            known = ", ".join(p.config.name for p in self.list_pools()) or "none"
            raise NotFound(f"no storage pool '{name}'; pools: {known}")
        return POOLS.load(row)

    def default_pool(self) -> PoolRecord | None:
        row = self.db.one(f"{POOLS.select} WHERE is_default LIMIT 1")
        return None if row is None else POOLS.load(row)

    def insert_pool(self, config: PoolConfig, default: bool = False) -> PoolRecord:
        record = PoolRecord(config, default)
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM storage_pools WHERE name = ?",
                            (config.name,)).fetchone():
                raise Conflict(f"storage pool '{config.name}' already exists")
            conn.execute(f"INSERT INTO storage_pools ({', '.join(POOLS.columns)}, created_at) "
                         f"VALUES ({', '.join('?' * (len(POOLS.columns) + 1))})",
                         (*POOLS.dump(record), to_sql_datetime(utcnow())))
        return record

    def delete_pool(self, name: str) -> None:
        self.db.execute("DELETE FROM storage_pools WHERE name = ?", (name,))

    # Disks ------------------------------------------------------------------------------
    def disks(self, instance_id: int) -> list[DiskRecord]:
        return [DISKS.load(r) for r in self.db.all(
            f"{DISKS.select} WHERE instance_id = ? ORDER BY idx", (instance_id,))]

    def disks_with_pools(self, instance_id: int) -> list[tuple[DiskRecord, PoolConfig]]:
        """Each disk of an instance with its pool's configuration: one query on every start
        and stop."""
        split = len(DISKS.columns)
        return [(DISKS.load(r[:split]), POOLS.load(r[split:]).config)
                for r in self.db.all(_DISKS_WITH_POOLS, (instance_id,))]

    def all_disks_with_pools(self) -> dict[int, list[tuple[DiskRecord, PoolConfig]]]:
        """``disks_with_pools`` of every instance by id, in one query (``list`` of all), read
        again only after a write (``Database.unchanged_since``): not to be changed."""
        return self.db.unchanged_since("disks_with_pools", self._all_disks_with_pools)

    def _all_disks_with_pools(self) -> dict[int, list[tuple[DiskRecord, PoolConfig]]]:
        split = len(DISKS.columns)
        found: dict[int, list[tuple[DiskRecord, PoolConfig]]] = {}
        rows = self.db.all(_ALL_DISKS_WITH_POOLS)
        memo = self._pairs  # a row seen before gives the records made then (they are frozen)
        if len(memo) > 2 * len(rows) + 256:
            memo.clear()
        for r in rows:
            pair = memo.get(r)
            if pair is None:
                pair = memo[r] = (DISKS.load(r[:split]), POOLS.load(r[split:]).config)
            found.setdefault(pair[0].instance_id, []).append(pair)
        return found

    def disks_in_pool(self, pool: str) -> list[DiskRecord]:
        return [DISKS.load(r) for r in self.db.all(f"{DISKS.select} WHERE pool = ?", (pool,))]

    def data_disk_bytes(self) -> int:
        """The size of every data disk on this host (a pending grow counted at its target)."""
        row = self.db.one("SELECT SUM(MAX(size, COALESCE(pending_size, 0))) "
                          "FROM instance_disks WHERE idx != 0")
        return int(row[0] or 0) if row else 0

    def insert_disk(self, disk: DiskRecord) -> None:
        with self.db.transaction() as conn:
            conn.execute(DISKS.insert, DISKS.dump(disk))

    def set_disk_size(self, instance_id: int, name: str, size: int,
                      pending: int | None) -> None:
        self.db.execute("UPDATE instance_disks SET size = ?, pending_size = ? "
                        "WHERE instance_id = ? AND name = ?", (size, pending, instance_id, name))

    def delete_disk(self, instance_id: int, name: str) -> None:
        self.db.execute("DELETE FROM instance_disks WHERE instance_id = ? AND name = ?",
                        (instance_id, name))

    def delete_disks(self, instance_id: int) -> None:
        self.db.execute("DELETE FROM instance_disks WHERE instance_id = ?", (instance_id,))
