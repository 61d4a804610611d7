"""Where the slow ``GET /api/v1/instances`` samples of many instances come from.

Starts corrald (fake drivers) under a probe that records every garbage collection the
daemon makes (generation, start, duration: ``gc.callbacks``), seeds ``--instances``
stopped instances, then times ``--runs`` list requests one after another. Each request's
wall time is split into the collections that ran inside it and the rest; the daemon's CPU
per request is read from ``/proc``. Counting, not wall time alone: on a shared host a
request's wall time is the load's, but a collection's count and size are the daemon's.

    .venv/bin/python bench/list_tail.py --instances 1000 --runs 100
    .venv/bin/python bench/list_tail.py --instances 1000 --gc-default   # main's GC set-up
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from tests.integration.conftest import start_daemon, stop_daemon, write_fake_template
from tests.integration.loadlab import seed

PROBE = Path(__file__).with_name("gc_probe.py")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--gc-default", action="store_true",
                        help="the daemon's collector left at Python's thresholds (a baseline)")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="corral-bench-listtail-"))
    out = state / "gc.json"
    write_fake_template(state / "templates")
    os.environ["CORRAL_GC_PROBE"] = str(out)
    if args.gc_default:
        os.environ["CORRAL_GC_PROBE_DEFAULT"] = "1"
    daemon = start_daemon(state, prefix=(sys.executable, str(PROBE)))
    try:
        seed(str(daemon.socket), args.instances)
        pid = daemon.process.pid
        transport = httpx.HTTPTransport(uds=str(daemon.socket))
        windows: list[tuple[float, float]] = []
        with httpx.Client(transport=transport, base_url="http://corral") as http:
            for _ in range(5):  # the first lists fill the caches
                http.get("/api/v1/instances").raise_for_status()
            time.sleep(1)
            os.kill(pid, signal.SIGUSR1)  # the probe forgets what came before
            time.sleep(0.5)
            before = cpu_seconds(pid)
            for _ in range(args.runs):
                began = time.monotonic()
                answer = http.get("/api/v1/instances")
                windows.append((began, time.monotonic()))
                assert len(answer.json()) == args.instances
            used = cpu_seconds(pid) - before
        os.kill(pid, signal.SIGUSR2)  # the probe writes what it saw since SIGUSR1
        deadline = time.monotonic() + 10
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        collections = json.loads(out.read_text())
    finally:
        stop_daemon(daemon)
        shutil.rmtree(state, ignore_errors=True)
    tail = [c for c in collections if c["generation"] == -1]
    collections = [c for c in collections if c["generation"] >= 0]
    walls, in_gc, full = [], [], []
    for began, ended in windows:
        inside = [c for c in collections if began <= c["start"] <= ended]
        walls.append((ended - began) * 1000)
        in_gc.append(sum(c["seconds"] for c in inside) * 1000)
        full.append(sum(1 for c in inside if c["generation"] == 2))
    by_gen = {g: [c for c in collections if c["generation"] == g] for g in (0, 1, 2)}
    print(f"{args.instances} instances, {args.runs} lists, GC "
          f"{'default after freeze' if args.gc_default else 'as corrald sets it'}; "
          f"daemon CPU {used / args.runs * 1000:.1f} ms per list")
    print(f"list wall p50 {pct(walls, 50):.1f} ms, p90 {pct(walls, 90):.1f}, "
          f"p99 {pct(walls, 99):.1f}, max {max(walls):.1f}")
    for gen, items in by_gen.items():
        if items:
            secs = [c["seconds"] * 1000 for c in items]
            print(f"gen {gen}: {len(items)} collections, {len(items) / args.runs:.2f} per list, "
                  f"median {statistics.median(secs):.2f} ms, max {max(secs):.2f} ms, "
                  "objects collected median "
                  f"{statistics.median(c['collected'] for c in items):.0f}")
    if tail:
        print(f"objects the collector tracks at the end: {tail[0]['collected']} "
              f"(frozen apart: {tail[0]['frozen']}); most: {tail[0]['kinds']}")
    slow = sorted(range(len(walls)), key=lambda i: walls[i])[-5:]
    for i in reversed(slow):
        print(f"  slow sample {walls[i]:.1f} ms: {in_gc[i]:.1f} ms in GC ({full[i]} full)")
    rest = [w - g for w, g in zip(walls, in_gc, strict=True)]
    print(f"without the GC time: p50 {pct(rest, 50):.1f} ms, p99 {pct(rest, 99):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
