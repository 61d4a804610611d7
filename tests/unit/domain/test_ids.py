"""Which id a new instance gets: lowest free, deleted ids kept out for the quarantine."""

from __future__ import annotations

from datetime import datetime, timedelta

from corral.domain.ids import IdPolicy, choose_id

NOW = datetime(2026, 12, 6, 12, 0)
DAY = timedelta(days=1)


def test_lowest_free_id_from_101_when_nothing_was_deleted() -> None:
    policy = IdPolicy(30 * DAY)
    assert choose_id([], {}, policy, NOW) == 101
    assert choose_id([101, 102], {}, policy, NOW) == 103
    assert choose_id([101, 103], {}, policy, NOW) == 102
    assert choose_id([], {}, IdPolicy(30 * DAY, first=250), NOW) == 250  # a migrated id


def test_a_deleted_id_stays_out_until_its_quarantine_ends() -> None:
    policy = IdPolicy(30 * DAY)
    retired = {101: NOW - 29 * DAY, 103: NOW - 31 * DAY}
    assert choose_id([102], retired, policy, NOW) == 103  # 101 still quarantined
    assert choose_id([102], retired, policy, NOW + 2 * DAY) == 101  # both free again


def test_quarantine_none_never_reuses_ids_only_grow() -> None:
    policy = IdPolicy(None)
    long_ago = NOW - 3650 * DAY
    assert choose_id([], {}, policy, NOW) == 101
    assert choose_id([101], {105: long_ago}, policy, NOW) == 106
    assert choose_id([], {101: long_ago, 102: long_ago}, policy, NOW) == 103
    assert choose_id([], {101: long_ago}, IdPolicy(None, first=250), NOW) == 250
