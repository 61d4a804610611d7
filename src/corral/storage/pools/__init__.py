"""Storage pools: where instance disks and cached template base images live."""

from corral.storage.pools.base import Pool, PoolConfig, PoolUsage, open_pool
from corral.storage.pools.copy import clone_file, reflink_works

__all__ = ["Pool", "PoolConfig", "PoolUsage", "clone_file", "open_pool", "reflink_works"]
