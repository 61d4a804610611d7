"""Retention rules (pure): which backups to keep, as restic/borg do.

``keep_last`` keeps the newest N. ``keep_daily`` keeps the newest backup of each of the N
most recent days that have a backup; ``keep_weekly`` the same per ISO week. A backup kept by
any rule is kept. With no rule at all nothing is deleted (pruning without rules is refused
by the caller, so a typo never empties a store).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime

from corral.domain.errors import InvalidInput


@dataclass(frozen=True)
class Retention:
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0

    def __post_init__(self) -> None:
        for name in ("keep_last", "keep_daily", "keep_weekly"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"{name.replace('_', '-')} must not be negative")

    @property
    def empty(self) -> bool:
        return not (self.keep_last or self.keep_daily or self.keep_weekly)


def _bucketed(
    items: Sequence[tuple[str, datetime]], count: int, key: Callable[[datetime], Hashable]
) -> set[str]:
    kept: set[str] = set()
    seen: set[Hashable] = set()
    for backup_id, when in items:
        bucket = key(when)
        if bucket in seen:
            continue
        if len(seen) == count:
            break
        seen.add(bucket)
        kept.add(backup_id)
    return kept


def select_kept(backups: Sequence[tuple[str, datetime]], rules: Retention) -> set[str]:
    """The ids to keep among ``(id, created_at)`` of one instance's backups."""
    if rules.empty:
        return {b for b, _ in backups}
    newest_first = sorted(backups, key=lambda b: b[1], reverse=True)
    kept = {b for b, _ in newest_first[: rules.keep_last]}
    kept |= _bucketed(newest_first, rules.keep_daily, lambda t: t.date())
    kept |= _bucketed(newest_first, rules.keep_weekly, lambda t: t.isocalendar()[:2])
    return kept
