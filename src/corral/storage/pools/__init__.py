"""Storage pools: where instance disks and cached template base images live."""

from corral.storage.pools.base import Pool, PoolUsage, open_pool
from corral.storage.pools.copy import clone_file, reflink_works

__all__ = ["Pool", "PoolUsage", "clone_file", "open_pool", "reflink_works"]
