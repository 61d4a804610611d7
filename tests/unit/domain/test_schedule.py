"""The next run of a daily schedule: a time passed today comes tomorrow; DST-safe."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from corral.domain.errors import InvalidInput
from corral.domain.schedule import next_daily, parse_daily

BERLIN = ZoneInfo("Europe/Berlin")


def test_a_time_already_passed_today_comes_tomorrow() -> None:
    # The case: `--daily 01:00` set at 02:35 ran 27 s later.
    now = datetime(2026, 12, 6, 2, 35, tzinfo=UTC)
    assert next_daily(time(1, 0), UTC, now) == datetime(2026, 12, 7, 1, 0, tzinfo=UTC)


def test_a_time_still_to_come_today_comes_today() -> None:
    now = datetime(2026, 12, 6, 2, 35, tzinfo=UTC)
    assert next_daily(time(3, 0), UTC, now) == datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


def test_the_time_itself_is_not_after_it() -> None:
    at = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)  # a run at 01:00 sets the next: tomorrow
    assert next_daily(time(1, 0), UTC, at) == datetime(2026, 12, 7, 1, 0, tzinfo=UTC)


def test_wall_clock_time_in_the_schedules_zone() -> None:
    winter = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert next_daily(time(2, 0), BERLIN, winter) == datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 6, 12, 0, tzinfo=UTC)
    assert next_daily(time(2, 0), BERLIN, summer) == datetime(2026, 7, 7, 0, 0, tzinfo=UTC)


def test_the_zones_date_may_differ_from_utcs() -> None:
    # 23:30 UTC on Dec 6 is 00:30 on Dec 7 in Berlin: 00:45 Berlin is 15 minutes away.
    now = datetime(2026, 12, 6, 23, 30, tzinfo=UTC)
    assert next_daily(time(0, 45), BERLIN, now) == datetime(2026, 12, 6, 23, 45, tzinfo=UTC)
    # 03:00 UTC on Dec 7 is 22:00 on Dec 6 in New York: 23:00 there comes in one hour.
    ny = ZoneInfo("America/New_York")
    now = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    assert next_daily(time(23, 0), ny, now) == datetime(2026, 12, 7, 4, 0, tzinfo=UTC)


def test_every_day_across_the_spring_change_runs_once_per_day_at_its_wall_time() -> None:
    # Europe/Berlin goes from +01:00 to +02:00 at 02:00 on 2026-03-29.
    runs = []
    now = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    for _ in range(4):
        now = next_daily(time(1, 30), BERLIN, now)
        runs.append(now.astimezone(BERLIN).strftime("%m-%d %H:%M %z"))
    assert runs == ["03-28 01:30 +0100", "03-29 01:30 +0100", "03-30 01:30 +0200",
                    "03-31 01:30 +0200"]


def test_a_time_in_the_skipped_hour_runs_later_that_day() -> None:
    now = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    run = next_daily(time(2, 30), BERLIN, now)
    assert run == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST: once that day
    assert next_daily(time(2, 30), BERLIN, run) == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)


def test_a_time_in_the_repeated_hour_runs_once() -> None:
    # Europe/Berlin goes back from +02:00 to +01:00 at 03:00 on 2026-10-25: 02:30 is twice.
    now = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
    first = next_daily(time(2, 30), BERLIN, now)
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # the first 02:30 (+02:00)
    then = next_daily(time(2, 30), BERLIN, first)
    assert then == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)  # not the second 02:30


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        next_daily(time(1, 0), UTC, datetime(2026, 12, 6, 2, 35))


@pytest.mark.parametrize("text", ["25:00", "12:60", "noon", "12", "12:5", "-1:00", "1:2:3"])
def test_bad_times_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="is not a time HH:MM"):
        parse_daily(text)


def test_times_are_parsed() -> None:
    assert parse_daily("2:05") == time(2, 5)
    assert parse_daily("23:59") == time(23, 59)
