"""The history sampler on a real SQLite database with a fake clock: rates, per-minute buckets,
roll-up into hours, retention and the bounded size after more than a month of fake time."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from corral.domain.errors import InvalidInput
from corral.services.history import HistorySampler, Range, Reading
from corral.state.database import Database
from corral.state.historystore import HOUR, MINUTE, HistoryStore

START = 1_800_000_000 // HOUR * HOUR  # on an hour boundary


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Guests:
    """Counters that grow at set rates with the clock: what the drivers would report."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.running: dict[int, float] = {}  # instance id -> CPU share (0..1) it burns
        self.base: dict[int, float] = {}
        self.reads = 0

    def __call__(self) -> Mapping[int, Reading]:
        self.reads += 1
        found = {}
        for iid, share in self.running.items():
            up = self.clock.now - self.base[iid]
            found[iid] = Reading(
                cpu_ns=int(up * share * 1e9), memory_used=iid * 1000, memory_total=10**6,
                io_read_bytes=int(up * 100), io_write_bytes=int(up * 200),
                net_rx_bytes=int(up * 1000), net_tx_bytes=int(up * 10),
                traffic={("world", "out"): int(up * 50), ("world", "in"): int(up * 5)})
        return found

    def start(self, iid: int, share: float) -> None:
        self.running[iid], self.base[iid] = share, self.clock.now


@pytest.fixture
def store(tmp_path: Path) -> HistoryStore:
    return HistoryStore(Database.open(tmp_path / "corral.db"))


def _walk(sampler: HistorySampler, clock: Clock, seconds: int, every: int = MINUTE) -> None:
    for _ in range(seconds // every):
        clock.now += every
        sampler.tick()


def test_rates_per_minute_come_from_the_counters(store: HistoryStore) -> None:
    clock = Clock()
    guests = Guests(clock)
    guests.start(1, 0.5)
    sampler = HistorySampler(store, guests, clock)
    assert sampler.tick() == 0  # the first reading is only a base
    _walk(sampler, clock, 10 * MINUTE)
    since, points = sampler.series(1, Range.HOUR)
    assert len(points) == 10 and since == START + 10 * MINUTE - HOUR
    last = points[-1]
    assert last.cpu_percent == 50.0
    assert (last.disk_read_bps, last.disk_write_bps) == (100.0, 200.0)
    assert (last.net_rx_bps, last.net_tx_bps) == (1000.0, 10.0)
    assert last.traffic == {("world", "out"): 50.0, ("world", "in"): 5.0}
    assert last.memory_used == 1000
    assert [p.ts for p in points] == [START + i * MINUTE for i in range(10)]  # the minutes
    # the readings covered (each reading at the end of its minute)


def test_several_readings_in_one_minute_make_one_bucket_of_their_mean(
        store: HistoryStore) -> None:
    clock = Clock(START + 1)
    guests = Guests(clock)
    guests.start(1, 0.2)
    sampler = HistorySampler(store, guests, clock, interval=5)
    sampler.tick()
    _walk(sampler, clock, 55, every=5)  # 11 more readings, all in the first minute
    _, points = sampler.series(1, Range.HOUR)
    assert len(points) == 1 and points[0].ts == START
    assert points[0].cpu_percent == 20.0


def test_a_counter_that_went_back_is_a_restart_not_a_negative_rate(
        store: HistoryStore) -> None:
    clock = Clock()
    guests = Guests(clock)
    guests.start(1, 1.0)
    sampler = HistorySampler(store, guests, clock)
    _walk(sampler, clock, 5 * MINUTE)
    clock.now += 30
    guests.start(1, 1.0)  # restarted 30 s before the next reading: counters from zero
    clock.now += 30
    sampler.tick()
    _, points = sampler.series(1, Range.HOUR)
    assert all(p.cpu_percent >= 0 for p in points)
    assert points[-1].cpu_percent == 50.0  # 30 s of CPU in the 60 s since the last reading


def test_a_month_is_rolled_up_into_hours_and_stays_bounded(store: HistoryStore) -> None:
    clock = Clock()
    guests = Guests(clock)
    guests.start(1, 0.25)
    guests.start(2, 1.0)
    sampler = HistorySampler(store, guests, clock)
    sampler.tick()
    # 32 days a reading each 5 minutes (to keep the test short), then a day each minute
    _walk(sampler, clock, 32 * 24 * HOUR, every=5 * MINUTE)
    _walk(sampler, clock, 24 * HOUR)
    assert guests.reads == 32 * 24 * 12 + 24 * 60 + 1  # one batch read per tick, for all

    minute_rows, minute_traffic = store.count(MINUTE)
    hour_rows, hour_traffic = store.count(HOUR)
    # per instance: a day of minutes (plus at most the hour before pruning runs again) and
    # 31 days of hours; 2 traffic rows (world in/out) per sample row
    assert 2 * 24 * 60 <= minute_rows <= 2 * 25 * 60
    assert hour_rows == 2 * 31 * 24
    assert (minute_traffic, hour_traffic) == (2 * minute_rows, 2 * hour_rows)

    since, month = sampler.series(2, Range.MONTH)
    assert since == (clock.now - 31 * 24 * HOUR) // HOUR * HOUR
    assert [p.ts for p in month] == list(range(int(since), int(clock.now) - HOUR + 1, HOUR))
    assert {p.cpu_percent for p in month} == {100.0}
    assert {p.cpu_percent for p in sampler.series(1, Range.MONTH)[1]} == {25.0}
    assert {p.traffic[("world", "out")] for p in month} == {50.0}
    _, day = sampler.series(2, Range.DAY)
    assert len(day) == 24 * 60 and day[-1].ts == clock.now - MINUTE


def test_an_hour_with_missing_minutes_averages_them_as_zero(store: HistoryStore) -> None:
    clock = Clock()
    guests = Guests(clock)
    guests.start(1, 1.0)
    sampler = HistorySampler(store, guests, clock)
    sampler.tick()
    _walk(sampler, clock, 30 * MINUTE)  # runs the first half hour, then is stopped
    del guests.running[1]
    _walk(sampler, clock, 31 * MINUTE)
    _, hours = sampler.series(1, Range.MONTH)
    assert len(hours) == 1 and hours[0].ts == START
    assert hours[0].cpu_percent == 50.0  # 30 minutes of 100 % in an hour
    assert hours[0].memory_used == 1000  # a gauge: the mean while it ran


def test_the_host_series_sums_the_instances(store: HistoryStore) -> None:
    clock = Clock()
    guests = Guests(clock)
    guests.start(1, 0.25)
    guests.start(2, 0.5)
    sampler = HistorySampler(store, guests, clock)
    sampler.tick()
    _walk(sampler, clock, 3 * MINUTE)
    _, host = sampler.series(None, Range.HOUR)
    assert [p.cpu_percent for p in host] == [75.0] * 3
    assert host[-1].memory_used == 3000
    assert host[-1].traffic[("world", "out")] == 100.0


def test_forget_drops_a_deleted_instances_history(store: HistoryStore) -> None:
    clock = Clock()
    guests = Guests(clock)
    guests.start(1, 0.5)
    guests.start(2, 0.5)
    sampler = HistorySampler(store, guests, clock)
    sampler.tick()
    _walk(sampler, clock, 2 * HOUR)
    sampler.forget(1)
    assert sampler.series(1, Range.DAY)[1] == [] and sampler.series(1, Range.MONTH)[1] == []
    assert len(sampler.series(2, Range.DAY)[1]) == 120


def test_a_clock_set_back_leaves_no_rows_in_the_future(store: HistoryStore) -> None:
    clock = Clock()
    guests = Guests(clock)
    guests.start(1, 0.5)
    sampler = HistorySampler(store, guests, clock)
    sampler.tick()
    _walk(sampler, clock, 3 * HOUR)
    clock.now -= 2 * HOUR
    sampler.tick()  # a base again: no negative span
    _walk(sampler, clock, HOUR)  # the next hour boundary prunes
    newest = max(p.ts for p in sampler.series(1, Range.DAY)[1])
    assert newest <= clock.now


def test_a_range_is_hour_day_or_month() -> None:
    assert Range.parse("month").step == HOUR and Range.parse("day").step == MINUTE
    with pytest.raises(InvalidInput, match="not one of: hour, day, month"):
        Range.parse("week")
