"""Daily schedules: a time of day in a named time zone, and when it next comes (pure).

A schedule's time is wall-clock time in its zone, so a backup set for 02:00 Europe/Berlin
runs at 02:00 there in winter and in summer. Instants are compared in UTC (two aware
datetimes in one zone compare by wall clock, which is wrong across a DST change). On the
day clocks go forward, a time in the skipped hour runs that much later (02:30 -> 03:30); on
the day they go back, a time in the repeated hour runs once, at its first occurrence.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, tzinfo

from corral.domain.errors import InvalidInput
from corral.domain.names import is_decimal


def parse_daily(text: str) -> time:
    """``HH:MM`` (24-hour) -> a time of day; anything else is refused."""
    hour_text, sep, minute_text = text.partition(":")
    if sep and is_decimal(hour_text) and is_decimal(minute_text) and len(minute_text) == 2:
        hour, minute = int(hour_text), int(minute_text)
        if 0 <= hour < 24 and 0 <= minute < 60:
            return time(hour, minute)
    raise InvalidInput(f"--daily '{text}' is not a time HH:MM")


def next_daily(at: time, zone: tzinfo, after: datetime) -> datetime:
    """The first instant strictly after ``after`` (aware) at which the wall clock in ``zone``
    shows ``at``, in UTC. A time already passed today comes tomorrow."""
    if after.tzinfo is None:
        raise ValueError("next_daily needs an aware datetime")
    after = after.astimezone(UTC)
    day = after.astimezone(zone).date() - timedelta(days=1)  # the zone's date may lag UTC's
    for offset in range(4):
        candidate = datetime.combine(day + timedelta(days=offset), at, tzinfo=zone)
        instant = candidate.astimezone(UTC)
        if instant > after:
            return instant
    raise AssertionError("a daily time comes within two days")  # pragma: no cover
