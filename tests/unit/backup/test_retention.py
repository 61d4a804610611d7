from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from corral.backup.retention import Retention, select_kept
from corral.domain.errors import InvalidInput

START = datetime(2026, 3, 2, 2, 0)  # a Monday


def daily(days: int, per_day: int = 1) -> list[tuple[str, datetime]]:
    return [(f"b{d}-{n}", START + timedelta(days=d, hours=n))
            for d in range(days) for n in range(per_day)]


def test_keep_last() -> None:
    assert select_kept(daily(5), Retention(keep_last=2)) == {"b4-0", "b3-0"}


def test_keep_daily_keeps_newest_of_each_day() -> None:
    assert select_kept(daily(4, per_day=3), Retention(keep_daily=2)) == {"b3-2", "b2-2"}


def test_keep_weekly_uses_iso_weeks() -> None:
    kept = select_kept(daily(21), Retention(keep_weekly=2))
    assert kept == {"b20-0", "b13-0"}  # Sundays closing weeks 2 and 3


def test_rules_combine_as_a_union() -> None:
    kept = select_kept(daily(21), Retention(keep_last=1, keep_daily=3, keep_weekly=3))
    assert kept == {"b20-0", "b19-0", "b18-0", "b13-0", "b6-0"}


def test_no_rule_keeps_everything_and_negative_is_refused() -> None:
    assert select_kept(daily(3), Retention()) == {"b0-0", "b1-0", "b2-0"}
    with pytest.raises(InvalidInput):
        Retention(keep_last=-1)
