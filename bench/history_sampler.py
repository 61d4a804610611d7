"""The history sampler's cost per tick with N running instances (fake driver), beside one
``usage_all`` (what `corral top` and /metrics read) over the same instances in the same run.

One tick = one batch reading (``stats_many`` per driver, the NICs' counters, the traffic
counters) + the rates + one write transaction of N rows; a roll-up tick also makes N
per-hour rows and prunes. The clock is the sampler's injectable one: ticks are a minute
apart in its time, back to back in real time.

    .venv/bin/python bench/history_sampler.py [--instances 1000] [--ticks 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corral.services.core import Corral, Settings
from corral.services.history import HistorySampler, read_all
from corral.state.historystore import HOUR, MINUTE, HistoryStore
from tests.integration.conftest import write_fake_template


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process)."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="corral-bench-history-") as tmp:
        state = Path(tmp)
        write_fake_template(state / "templates")
        corral = Corral(Settings(state_dir=state, driver_mode="fake", node="bench",
                                 history_interval=0))
        corral.start()
        corral.capacity.set_policy({"cpu": "100000", "memory": "100000", "disk": "100000"})
        made = time.perf_counter()

        def make(i: int) -> None:
            op = corral.instances.create(f"h{i}", "ct", "tiny", {}, start=True)
            corral.operations.wait(op.id, 120)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(make, range(args.instances)))
        running = sum(1 for v in corral.instances.list_all() if v.state.value == "running")
        print(f"{running} running fake instances made in {time.perf_counter() - made:.1f} s")

        now = [float(1_800_000_000 // HOUR * HOUR + 30)]
        sampler = HistorySampler(HistoryStore(corral.db),
                                 lambda: read_all(corral.resources, corral.networks),
                                 clock=lambda: now[0])
        sampler.tick()  # the base reading
        ticks, usage, reads = [], [], []
        for _ in range(args.ticks):
            now[0] += MINUTE
            reads.append(_timed(lambda: read_all(corral.resources, corral.networks)))
            ticks.append(_timed(sampler.tick))
            usage.append(_timed(corral.resources.usage_all))
        now[0] = (now[0] // HOUR + 1) * HOUR + 30  # across an hour: a roll-up and a prune
        rollup = _timed(sampler.tick)
        rows = HistoryStore(corral.db).count()
        db_bytes = sum(p.stat().st_size for p in state.glob("corral.db*"))
        corral.close()

    def med(samples: list[tuple[float, float]], i: int) -> float:
        return statistics.median(s[i] for s in samples) * 1000

    print(f"\n{args.instances} instances, {args.ticks} ticks (medians, ms)")
    print(f"{'':28}{'wall':>10}{'cpu':>10}")
    print(f"{'sampler tick':28}{med(ticks, 0):10.1f}{med(ticks, 1):10.1f}")
    print(f"{'  of which the batch read':28}{med(reads, 0):10.1f}{med(reads, 1):10.1f}")
    print(f"{'tick with roll-up + prune':28}{rollup[0] * 1000:10.1f}{rollup[1] * 1000:10.1f}")
    print(f"{'usage_all (top, /metrics)':28}{med(usage, 0):10.1f}{med(usage, 1):10.1f}")
    print(f"ratio tick / usage_all (wall): {med(ticks, 0) / med(usage, 0):.2f}")
    print(f"share of one CPU at one tick a minute: "
          f"{med(ticks, 1) / 1000 / MINUTE * 100:.3f} %")
    print(f"rows after the run: {rows[0]} samples, {rows[1]} traffic; database {db_bytes} B")


if __name__ == "__main__":
    main()
