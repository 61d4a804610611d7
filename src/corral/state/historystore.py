"""History samples for graphs in the daemon's database (the only code building their queries).

Two resolutions share one table, told apart by ``step``: per-minute rows (``MINUTE``) and
per-hour rows (``HOUR``) made from them by ``roll_up``. Each row is one instance's bucket
starting at ``ts`` (Unix seconds, a multiple of ``step``); traffic per class and direction
sits in its own table with the same key. ``prune`` keeps both bounded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from corral.state.database import Database

MINUTE = 60
HOUR = 3600

_FIELDS = ("seconds", "cpu_percent", "memory_used", "memory_total", "disk_read_bps",
           "disk_write_bps", "net_rx_bps", "net_tx_bps")
_RATES = ("cpu_percent", "disk_read_bps", "disk_write_bps", "net_rx_bps", "net_tx_bps")


@dataclass(frozen=True)
class Sample:
    """One bucket of one instance (or, from ``series`` with no instance, of the host)."""

    ts: int
    seconds: float  # the time the readings in the bucket covered (up to its step)
    cpu_percent: float  # percent of one CPU, mean over the bucket
    memory_used: int
    memory_total: int
    disk_read_bps: float
    disk_write_bps: float
    net_rx_bps: float  # bytes per second into the instance (all of its NICs)
    net_tx_bps: float
    traffic: Mapping[tuple[str, str], float] = field(default_factory=dict)
    """(traffic class, direction "in"/"out") -> bytes per second."""

    def values(self) -> tuple[float | int, ...]:
        return tuple(getattr(self, name) for name in _FIELDS)


class HistoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def write(self, step: int, samples: Mapping[int, Sample]) -> None:
        """Insert or replace the buckets of ``samples`` (by instance id), in one transaction."""
        if not samples:
            return
        marks = ", ".join("?" * (3 + len(_FIELDS)))
        with self.db.transaction() as conn:
            conn.executemany(
                f"INSERT OR REPLACE INTO history_samples (instance_id, step, ts, "
                f"{', '.join(_FIELDS)}) VALUES ({marks})",
                [(iid, step, s.ts, *s.values()) for iid, s in samples.items()])
            conn.executemany(
                "INSERT OR REPLACE INTO history_traffic (instance_id, step, ts, class, "
                "direction, bps) VALUES (?, ?, ?, ?, ?, ?)",
                [(iid, step, s.ts, cls, direction, bps) for iid, s in samples.items()
                 for (cls, direction), bps in s.traffic.items()])

    def last_hour(self) -> int | None:
        """The start of the newest per-hour bucket."""
        row = self.db.one("SELECT MAX(ts) FROM history_samples WHERE step = ?", (HOUR,))
        return None if row is None or row[0] is None else int(row[0])

    def roll_up(self, since: int, before: int) -> int:
        """Per-hour rows for every hour in [``since``, ``before``) from the per-minute rows
        there: rates are the hour's mean (what the rows counted over the whole hour: time
        without a row counts as zero -- the instance was not running, or corrald was not),
        memory the mean of the rows. The number of per-hour rows written."""
        rates = ", ".join(f"SUM({name} * seconds) / {HOUR}" for name in _RATES)
        with self.db.transaction() as conn:
            written = conn.execute(
                f"INSERT OR REPLACE INTO history_samples (instance_id, step, ts, "
                f"seconds, {', '.join(_RATES)}, memory_used, memory_total) "
                f"SELECT instance_id, {HOUR}, (ts / {HOUR}) * {HOUR}, SUM(seconds), {rates}, "
                "CAST(AVG(memory_used) AS INTEGER), MAX(memory_total) FROM history_samples "
                f"WHERE step = ? AND ts >= ? AND ts < ? GROUP BY instance_id, ts / {HOUR}",
                (MINUTE, since, before)).rowcount
            conn.execute(
                "INSERT OR REPLACE INTO history_traffic (instance_id, step, ts, class, "
                f"direction, bps) SELECT t.instance_id, {HOUR}, (t.ts / {HOUR}) * {HOUR}, "
                f"t.class, t.direction, SUM(t.bps * s.seconds) / {HOUR} FROM history_traffic t "
                "JOIN history_samples s ON s.instance_id = t.instance_id AND s.step = t.step "
                "AND s.ts = t.ts WHERE t.step = ? AND t.ts >= ? AND t.ts < ? "
                f"GROUP BY t.instance_id, t.ts / {HOUR}, t.class, t.direction",
                (MINUTE, since, before))
        return int(written)

    def prune(self, keep: Mapping[int, tuple[int, int]]) -> int:
        """Delete each step's rows outside its window: ``keep`` maps a step to the
        [oldest, newest] bucket start kept (newer ones are from a clock set back)."""
        deleted = 0
        with self.db.transaction() as conn:
            for step, (oldest, newest) in keep.items():
                for table in ("history_samples", "history_traffic"):
                    deleted += conn.execute(
                        f"DELETE FROM {table} WHERE step = ? AND (ts < ? OR ts > ?)",
                        (step, oldest, newest)).rowcount
        return deleted

    def forget(self, instance_id: int) -> None:
        """A deleted instance's history (a new instance reusing the id starts empty)."""
        with self.db.transaction() as conn:
            for table in ("history_samples", "history_traffic"):
                conn.execute(f"DELETE FROM {table} WHERE instance_id = ?", (instance_id,))

    def series(self, instance_id: int | None, step: int, since: int) -> list[Sample]:
        """The buckets of ``step`` from ``since`` on, oldest first: one instance's, or with
        ``instance_id`` None the host's (every instance's summed per bucket)."""
        where, params = "step = ? AND ts >= ?", [step, since]
        if instance_id is not None:
            where, params = where + " AND instance_id = ?", [*params, instance_id]
        summed = ", ".join(f"SUM({name})" for name in _FIELDS)
        rows = self.db.all(f"SELECT ts, {summed} FROM history_samples WHERE {where} "
                           "GROUP BY ts ORDER BY ts", params)
        traffic: dict[int, dict[tuple[str, str], float]] = {}
        for ts, cls, direction, bps in self.db.all(
                f"SELECT ts, class, direction, SUM(bps) FROM history_traffic WHERE {where} "
                "GROUP BY ts, class, direction", params):
            traffic.setdefault(ts, {})[(cls, direction)] = bps
        return [Sample(ts=r[0], seconds=float(r[1]), cpu_percent=float(r[2]),
                       memory_used=int(r[3]), memory_total=int(r[4]),
                       disk_read_bps=float(r[5]), disk_write_bps=float(r[6]),
                       net_rx_bps=float(r[7]), net_tx_bps=float(r[8]),
                       traffic=traffic.get(r[0], {})) for r in rows]

    def count(self, step: int | None = None) -> tuple[int, int]:
        """How many (sample rows, traffic rows) are stored (of ``step``, if given)."""
        where, params = ("WHERE step = ?", (step,)) if step is not None else ("", ())
        found = [self.db.one(f"SELECT COUNT(*) FROM {t} {where}", params)
                 for t in ("history_samples", "history_traffic")]
        return tuple(int(r[0]) if r else 0 for r in found)  # type: ignore[return-value]
