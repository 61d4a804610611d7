"""Which id a new instance gets: the lowest free one from ``FIRST_ID`` up, except ids deleted
less than a quarantine ago (billing and monitoring key on ids: a deleted instance's id must
not name another one the next minute). Quarantine ``None`` means an id is never used twice:
ids only grow.

Pure: the store that hands out ids gives ``choose_id`` what it knows (``IdLedger``) inside its
own transaction. The local database is one such ledger; a cluster store can be another (ids
cluster-wide, reserved by compare-and-swap) without the services changing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from corral.domain.names import FIRST_ID

DEFAULT_QUARANTINE = timedelta(days=30)


@dataclass(frozen=True)
class IdPolicy:
    quarantine: timedelta | None = DEFAULT_QUARANTINE
    """How long a deleted id stays out of use; None: forever (ids only grow)."""
    first: int = FIRST_ID


class IdLedger(Protocol):
    """What an id allocator reads and writes: implemented by the local state store (one host)
    and, later, by the cluster store (every host's ids)."""

    def ids_in_use(self) -> Iterable[int]: ...

    def retired_ids(self) -> Mapping[int, datetime]:
        """Every deleted id still on record and when it was deleted."""
        ...


def choose_id(in_use: Iterable[int], retired: Mapping[int, datetime], policy: IdPolicy,
              now: datetime) -> int:
    """The id for a new instance under ``policy`` at ``now``."""
    taken = set(in_use)
    if policy.quarantine is None:
        return max([policy.first - 1, *taken, *retired]) + 1
    cutoff = now - policy.quarantine
    taken.update(i for i, when in retired.items() if when > cutoff)
    candidate = policy.first
    while candidate in taken:
        candidate += 1
    return candidate
