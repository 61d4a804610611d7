"""History for graphs: one sampler thread, bounded per-minute and per-hour samples in SQLite.

Every ``interval`` seconds the sampler takes ONE batch reading of every instance (the
drivers' ``stats_many``, the NICs' counters, the traffic classes' nftables counters -- see
``Corral._history_reading``), turns the cumulative counters into rates against the previous
reading, and writes one row per running instance into the current minute's bucket. When an
hour is complete it is rolled up into a per-hour row; rows older than ``MINUTES_KEPT`` (per
minute) and ``HOURS_KEPT`` (per hour) are deleted, so the history of an instance never holds
more than 1440 + 744 rows (and one traffic row per class and direction for each).

A bucket's rates are the mean over the time the readings inside it covered: several ticks
in one minute (a short ``interval``, a restart) add up instead of replacing each other.

The clock is injectable (``clock``) and ``tick`` can be called directly: a test walks a
month of fake time in a few thousand ticks, without waiting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from corral.domain.errors import InvalidInput
from corral.services.networks import NetworkService
from corral.services.resources import ResourceService
from corral.state.historystore import HOUR, MINUTE, HistoryStore
from corral.state.historystore import Sample as Sample

log = logging.getLogger("corral.history")

MINUTES_KEPT = 24 * 3600  # per-minute buckets: the last day
HOURS_KEPT = 31 * 24 * 3600  # per-hour buckets: the last 31 days
MAX_GAP = 5 * MINUTE  # readings further apart than this give no rate (corrald was stopped)


class Range(StrEnum):
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"

    @staticmethod
    def parse(text: str) -> Range:
        try:
            return Range(text)
        except ValueError:
            raise InvalidInput(f"history range '{text}' is not one of: hour, day, month") from None

    @property
    def step(self) -> int:
        return HOUR if self is Range.MONTH else MINUTE

    @property
    def seconds(self) -> int:
        return {Range.HOUR: 3600, Range.DAY: MINUTES_KEPT, Range.MONTH: HOURS_KEPT}[self]


@dataclass(frozen=True)
class Reading:
    """One instance's cumulative counters (and memory gauge) at one moment."""

    cpu_ns: int = 0
    memory_used: int = 0
    memory_total: int = 0
    io_read_bytes: int = 0
    io_write_bytes: int = 0
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0
    traffic: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """(traffic class, direction) -> bytes counted so far."""


Reader = Callable[[], Mapping[int, Reading]]
"""Every running instance's reading by instance id, read in one batch."""


def _delta(now: int, before: int) -> int:
    """What a cumulative counter grew by; a counter that went back was reset (a restart):
    it counted ``now`` since."""
    return now - before if now >= before else now


@dataclass
class _Bucket:
    """What the readings in one minute added up to, for one instance."""

    ts: int
    seconds: float = 0.0
    cpu_ns: int = 0
    read: int = 0
    written: int = 0
    rx: int = 0
    tx: int = 0
    traffic: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, seconds: float, new: Reading, old: Reading) -> None:
        self.seconds += seconds
        self.cpu_ns += _delta(new.cpu_ns, old.cpu_ns)
        self.read += _delta(new.io_read_bytes, old.io_read_bytes)
        self.written += _delta(new.io_write_bytes, old.io_write_bytes)
        self.rx += _delta(new.net_rx_bytes, old.net_rx_bytes)
        self.tx += _delta(new.net_tx_bytes, old.net_tx_bytes)
        for key, value in new.traffic.items():
            grown = _delta(value, old.traffic.get(key, 0))
            self.traffic[key] = self.traffic.get(key, 0) + grown

    def sample(self, now: Reading) -> Sample:
        span = self.seconds
        return Sample(
            self.ts, span, round(self.cpu_ns / (span * 1e9) * 100, 2), now.memory_used,
            now.memory_total, self.read / span, self.written / span, self.rx / span,
            self.tx / span, traffic={k: v / span for k, v in self.traffic.items()},
        )


def read_all(resources: ResourceService, networks: NetworkService) -> dict[int, Reading]:
    """The daemon's ``Reader``: one ``stats_many`` per driver, the NICs' counters and one
    read of the traffic counters, for every running instance."""
    per_class: dict[int, dict[tuple[str, str], int]] = {}
    for row in networks.traffic():
        per_class.setdefault(row.instance_id, {})[(row.traffic_class,
                                                   row.direction.value)] = row.bytes
    return {
        iid: Reading(s.cpu_ns, s.memory_used, s.memory_total, s.io_read_bytes,
                     s.io_write_bytes, rx, tx, per_class.get(iid, {}))
        for iid, (s, rx, tx) in resources.running_counters().items()
    }


class HistorySampler:
    """The one sampler of a daemon; ``tick`` is one batch, ``start`` runs it in a thread."""

    def __init__(self, store: HistoryStore, read: Reader,
                 clock: Callable[[], float] = time.time, interval: float = MINUTE) -> None:
        self.store = store
        self.read = read
        self.clock = clock
        self.interval = interval
        self._last: dict[int, tuple[float, Reading]] = {}
        self._buckets: dict[int, _Bucket] = {}
        self._rolled: int | None = None  # start of the hour rolled up last
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.hourly: list[Callable[[], object]] = []
        """Other upkeep run with the hourly roll-up (the audit log's retention): the
        daemon's one periodic thread, not one more."""

    # One batch --------------------------------------------------------------------------
    def tick(self) -> int:
        """Read every instance once, write the current minute's buckets, roll up finished
        hours and prune; the number of instances written."""
        with self._lock:
            readings = self.read()
            now = self.clock()
            written = self._record(now, readings)
            self._maintain(int(now))
            return written

    def _record(self, now: float, readings: Mapping[int, Reading]) -> int:
        samples: dict[int, Sample] = {}
        for iid, reading in readings.items():
            previous = self._last.get(iid)
            self._last[iid] = (now, reading)
            if previous is None or not 0 < now - previous[0] <= MAX_GAP:
                continue  # a first reading (or one after a gap, or a clock set back): a base
            # the minute of the span's middle: a reading at hh:mm:00 counts the minute before
            minute = int((now + previous[0]) / 2) // MINUTE * MINUTE
            bucket = self._buckets.get(iid)
            if bucket is None or bucket.ts != minute:
                bucket = self._buckets[iid] = _Bucket(minute)
            bucket.add(now - previous[0], reading, previous[1])
            samples[iid] = bucket.sample(reading)
        for gone in set(self._last) - set(readings):  # stopped or deleted: start afresh
            self._last.pop(gone, None)
            self._buckets.pop(gone, None)
        self.store.write(MINUTE, samples)
        return len(samples)

    def _maintain(self, now: int) -> None:
        hour = now // HOUR * HOUR
        if hour != self._rolled:  # an hour ended (or the clock was set back)
            newest = self.store.last_hour()
            since = max(newest + HOUR if newest is not None else 0, now - MINUTES_KEPT)
            self.store.roll_up(since // HOUR * HOUR, hour)
            self._rolled = hour
            # the current hour is rolled up once it ends; rows ahead of now: a clock set back
            self.store.prune({MINUTE: (now - MINUTES_KEPT, now),
                              HOUR: (now - HOURS_KEPT, now)})
            for upkeep in self.hourly:
                try:
                    upkeep()
                except Exception:  # one broken upkeep must not stop the samples
                    log.exception("hourly upkeep %r failed", upkeep)

    # Queries --------------------------------------------------------------------------------
    def series(self, instance_id: int | None, span: Range) -> tuple[int, list[Sample]]:
        """(the start of the range, its buckets oldest first) for one instance or the host."""
        now = int(self.clock())
        since = (now - span.seconds) // span.step * span.step
        return since, self.store.series(instance_id, span.step, since)

    def forget(self, instance_id: int) -> None:
        with self._lock:
            self._last.pop(instance_id, None)
            self._buckets.pop(instance_id, None)
            self.store.forget(instance_id)

    # The thread -------------------------------------------------------------------------
    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="history", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            # at the same offset in every interval: one reading per minute bucket
            wait = self.interval - (self.clock() % self.interval) if self.interval >= 1 \
                else self.interval
            if self._stop.wait(wait):
                return
            try:
                self.tick()
            except Exception:  # a broken runtime must not end the history for good
                log.exception("history sample failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
