"""The database statements of a start and a stop: plain ``sqlite3`` (what the stores run)
against SQLAlchemy Core (the same statements built as Core expressions), per statement.

Each statement is timed twice: *hot* (median of a tight loop) and *after idle* (median of
single runs, each after ``--idle`` seconds asleep and a pass over a buffer larger than the
CPU caches: the state a daemon's code is in when a request arrives after a pause, which is
what a lifecycle request meets). Both sides read and write the same migrated database file;
each side maps its rows to the same records.

    .venv/bin/python bench/state_statements.py [--runs 30] [--idle 0.3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from corral.domain.instance import Kind
from corral.domain.lifecycle import State
from corral.domain.pools import PoolConfig
from corral.domain.resources import Resources
from corral.domain.statuses import OperationStatus
from corral.state.database import Database, to_sql_datetime, utcnow
from corral.state.netstore import NetworkStore
from corral.state.storagestore import DISKS, POOLS, DiskRecord, StorageStore
from corral.state.store import INSTANCES, OPERATIONS, StateStore

_EVICT = bytearray(32 << 20)


def _evict() -> None:
    """Touch 32 MiB so the statement's code and data are no longer in the CPU caches."""
    _EVICT[::64] = bytes(len(range(0, len(_EVICT), 64)))


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def hot(fn: Callable[[], object], runs: int) -> float:
    fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return _median_ms(samples)


def cold(fn: Callable[[], object], runs: int, idle: float) -> float:
    samples = []
    for _ in range(runs):
        time.sleep(idle)
        _evict()
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return _median_ms(samples)


class CoreSide:
    """The same statements as SQLAlchemy Core expressions."""

    def __init__(self, path: Path) -> None:
        self.engine = sa.create_engine(f"sqlite:///{path}")

        @sa.event.listens_for(self.engine, "connect")
        def _pragmas(conn: Any, _record: object) -> None:
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")

        # untyped columns: the values come back as stored, for the stores' own mappers
        columns = {
            "instances": INSTANCES.columns, "operations": OPERATIONS.columns,
            "instance_disks": DISKS.columns, "storage_pools": POOLS.columns,
            "nics": ("id", "instance_id"),
        }
        self.t = {name: sa.table(name, *(sa.column(c) for c in cols))
                  for name, cols in columns.items()}

    def get_instance(self, name: str) -> object:
        i = self.t["instances"]
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(*(i.c[c] for c in INSTANCES.columns))
                               .where(i.c.name == name)).one()
        return INSTANCES.load(tuple(row))

    def insert_operation(self, instance_id: int, name: str) -> None:
        now = to_sql_datetime(utcnow())
        o, i = self.t["operations"], self.t["instances"]
        with self.engine.begin() as conn:
            conn.execute(o.insert().values(
                id=uuid.uuid4().hex, action="start", instance=name,
                status=OperationStatus.RUNNING.value, progress=0.0, phase="queued",
                created_at=now, updated_at=now))
            conn.execute(i.update().where(i.c.id == instance_id)
                         .values(state=State.STARTING.value))

    def update_operation(self, op_id: str, instance_id: int) -> object:
        o, i = self.t["operations"], self.t["instances"]
        with self.engine.begin() as conn:
            row = conn.execute(
                o.update().where(o.c.id == op_id).values(
                    status=OperationStatus.SUCCESS.value, progress=1.0, phase="done",
                    updated_at=to_sql_datetime(utcnow()))
                .returning(*(o.c[c] for c in OPERATIONS.columns))).one()
            conn.execute(i.update().where(i.c.id == instance_id)
                         .values(state=State.RUNNING.value))
        return OPERATIONS.load(tuple(row))

    def disks_with_pools(self, instance_id: int) -> object:
        d, p = self.t["instance_disks"], self.t["storage_pools"]
        query = (sa.select(*(d.c[c] for c in DISKS.columns), *(p.c[c] for c in POOLS.columns))
                 .join(p, p.c.name == d.c.pool).where(d.c.instance_id == instance_id)
                 .order_by(d.c.idx))
        split = len(DISKS.columns)
        with self.engine.connect() as conn:
            return [(DISKS.load(tuple(r)[:split]), POOLS.load(tuple(r)[split:]).config)
                    for r in conn.execute(query)]

    def instance_with_nics(self, name: str) -> object:
        i, n = self.t["instances"], self.t["nics"]
        with self.engine.connect() as conn:
            return conn.execute(sa.select(i.c.id).join(n, n.c.instance_id == i.c.id)
                                .where(i.c.name == name).limit(1)).scalar()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--idle", type=float, default=0.3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="corral-bench-state-") as tmp:
        db = Database.open(Path(tmp) / "corral.db")
        state, storage, nets = StateStore(db), StorageStore(db), NetworkStore(db)
        storage.insert_pool(PoolConfig("default", "dir", Path(tmp) / "pool"), default=True)
        for n in range(50):  # a host with some instances
            rec = state.insert_instance(f"ct{n}", Kind.CT, "tiny", Resources(), False, "n1",
                                        101)
            storage.insert_disk(DiskRecord(rec.id, "root", 0, "default", 1 << 30))
        target = state.get_instance("ct25")
        core = CoreSide(db.path)
        op_ids = [state.insert_operation(uuid.uuid4().hex, "start", "ct25").id
                  for _ in range(2)]

        cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
            ("instance by name", lambda: state.get_instance("ct25"),
             lambda: core.get_instance("ct25")),
            ("insert operation + state (txn)",
             lambda: state.insert_operation(uuid.uuid4().hex, "start", "ct25",
                                            (target.id, State.STARTING)),
             lambda: core.insert_operation(target.id, "ct25")),
            ("disks with pools (join)", lambda: storage.disks_with_pools(target.id),
             lambda: core.disks_with_pools(target.id)),
            ("instance has NICs (join)", lambda: nets.instance_with_nics("ct25"),
             lambda: core.instance_with_nics("ct25")),
            ("update operation RETURNING + state",
             lambda: state.update_operation(op_ids[0], status=OperationStatus.SUCCESS,
                                            progress=1.0, phase="done",
                                            instance_state=(target.id, State.RUNNING)),
             lambda: core.update_operation(op_ids[1], target.id)),
        ]
        header = (f"{'statement':<36} {'sqlite3 hot':>12} {'core hot':>10} "
                  f"{'sqlite3 idle':>13} {'core idle':>10} {'core/sqlite3 idle':>18}")
        lines, results = [header, "-" * len(header)], {}
        totals = [0.0, 0.0, 0.0, 0.0]
        for label, raw, via_core in cases:
            values = [hot(raw, args.runs * 10), hot(via_core, args.runs * 10),
                      cold(raw, args.runs, args.idle), cold(via_core, args.runs, args.idle)]
            totals = [t + v for t, v in zip(totals, values, strict=True)]
            results[label] = values
            lines.append(f"{label:<36} {values[0]:>10.3f}ms {values[1]:>8.3f}ms "
                         f"{values[2]:>11.3f}ms {values[3]:>8.3f}ms "
                         f"{values[3] / values[2]:>17.2f}x")
        lines.append(f"{'sum (one start or stop)':<36} {totals[0]:>10.3f}ms {totals[1]:>8.3f}ms "
                     f"{totals[2]:>11.3f}ms {totals[3]:>8.3f}ms "
                     f"{totals[3] / totals[2]:>17.2f}x")
        print("\n".join(lines))
        print(json.dumps({"runs": args.runs, "idle_s": args.idle, "ms": results}))
        core.engine.dispose()
        db.close()


if __name__ == "__main__":
    main()
