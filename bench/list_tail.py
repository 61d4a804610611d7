"""Where the slow ``GET /api/v1/instances`` samples of many instances come from.

Starts corrald (fake drivers) under a probe that records every garbage collection the
daemon makes (generation, start, duration: ``gc.callbacks``), seeds ``--instances``
stopped instances, then times ``--runs`` list requests one after another. Each request's
wall time is split into the collections that ran inside it and the rest; the daemon's CPU
per request is read from ``/proc``. Counting, not wall time alone: on a shared host a
request's wall time is the load's, but a collection's count and size are the daemon's.

    .venv/bin/python bench/list_tail.py --instances 1000 --runs 100
    .venv/bin/python bench/list_tail.py --instances 1000 --gc-default   # main's GC set-up
    .venv/bin/python bench/list_tail.py --real 300 --runs 100           # real CTs (root)

With ``--real N``: real drivers, N tiny containers created and started by one bulk request
(as bench/density.py's batches do), the first list after them timed apart, then the runs.
The probe also times the daemon's own steps (bench/gc_probe.py): for the slowest samples the
time in ``list_all`` (its thread's CPU too), the runtime-state batch, the JSON, database
write transactions and the history sampler's reading that overlapped each.
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

from corral.client import CorralClient
from corral.domain.bulk import BulkAction
from corral.wire.bulk import BulkCreate, BulkRequestModel
from tests.integration.conftest import (
    delete_everything,
    start_daemon,
    stop_daemon,
    write_fake_template,
)
from tests.integration.loadlab import seed

PROBE = Path(__file__).with_name("gc_probe.py")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def overlapping(steps: list[dict[str, object]], window: tuple[float, float]) -> str:
    """The daemon's timed steps (gc_probe) that overlapped ``window``, summed by kind."""
    began, ended = window
    sums: dict[str, list[float]] = {}
    for step in steps:
        start, seconds = float(str(step["start"])), float(str(step["seconds"]))
        if start <= ended and start + seconds >= began:
            what = str(step["what"])
            if what == "write transaction":
                what += f" ({step['thread']})"
            row = sums.setdefault(what, [0, 0.0, 0.0])
            row[0] += 1
            row[1] += seconds * 1000
            row[2] += float(str(step["cpu"])) * 1000
    return ", ".join(f"{what} {n:.0f}x {wall:.1f} ms (cpu {cpu:.1f})"
                     for what, (n, wall, cpu) in sorted(sums.items())) or "no timed step"


def make_real(socket: Path, count: int) -> str:
    """``count`` tiny containers created and started by one bulk request; how long it took."""
    with CorralClient(socket=str(socket)) as c:
        c.set_policy({"cpu": "none", "memory": "none", "disk": "none"})
        began = time.monotonic()
        parent = c.bulk(BulkRequestModel(
            action=BulkAction.CREATE, names=[f"lt{i}" for i in range(count)], parallel=8,
            create=BulkCreate(type="ct", template="tiny", memory="64M", disk="64M",
                              start=True)))
        done = c.wait(parent.id, timeout=1800)
        took = time.monotonic() - began
        if done.status != "success":
            raise RuntimeError(f"bulk create: {done.error}")
    return f"{count} real CTs created and started in {took:.1f} s ({count / took:.1f}/s)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--gc-default", action="store_true",
                        help="the daemon's collector left at Python's thresholds (a baseline)")
    parser.add_argument("--real", type=int, default=0, metavar="N",
                        help="N real tiny containers, running (root), instead of fake ones")
    parser.add_argument("--gap", type=float, default=0.0,
                        help="seconds between two lists (default: one after another)")
    args = parser.parse_args()
    if args.real and os.geteuid() != 0:
        sys.exit("--real: run as root")
    state = Path(tempfile.mkdtemp(prefix="corral-bench-listtail-"))
    state.chmod(0o711)
    out = state / "gc.json"
    os.environ["CORRAL_GC_PROBE"] = str(out)
    if args.gc_default:
        os.environ["CORRAL_GC_PROBE_DEFAULT"] = "1"
    if args.real:
        from corral.templates.builders.tiny import build_tiny
        build_tiny(state / "templates" / "tiny")
        args.instances = args.real
    else:
        write_fake_template(state / "templates")
    daemon = start_daemon(state, drivers="real" if args.real else "fake",
                          prefix=(sys.executable, str(PROBE)))
    first = ""
    try:
        pid = daemon.process.pid
        if args.real:
            first = make_real(daemon.socket, args.real)
        else:
            seed(str(daemon.socket), args.instances)
        transport = httpx.HTTPTransport(uds=str(daemon.socket))
        windows: list[tuple[float, float]] = []
        with httpx.Client(transport=transport, base_url="http://corral") as http:
            first_window = (0.0, 0.0)
            if args.real:  # the first list after the bulk: every new container read once
                os.kill(pid, signal.SIGUSR1)  # the probe forgets what came before
                time.sleep(0.5)
                began = time.monotonic()
                http.get("/api/v1/instances").raise_for_status()
                first_window = (began, time.monotonic())
                took_ms = 1000 * (first_window[1] - began)
                first = f"{first}; the first list after it {took_ms:.1f} ms"
            for _ in range(5):  # the first lists fill the caches
                http.get("/api/v1/instances").raise_for_status()
            time.sleep(1)
            if not args.real:
                os.kill(pid, signal.SIGUSR1)  # the probe forgets what came before
                time.sleep(0.5)
            before = cpu_seconds(pid)
            for _ in range(args.runs):
                began = time.monotonic()
                answer = http.get("/api/v1/instances")
                windows.append((began, time.monotonic()))
                assert len(answer.json()) == args.instances
                if args.gap:
                    time.sleep(args.gap)
            used = cpu_seconds(pid) - before
        os.kill(pid, signal.SIGUSR2)  # the probe writes what it saw since SIGUSR1
        deadline = time.monotonic() + 10
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        collections = json.loads(out.read_text())
        if args.real:
            with CorralClient(socket=str(daemon.socket)) as c:
                names = [i.name for i in c.list_instances()]
                parent = c.bulk(BulkRequestModel(action=BulkAction.DELETE, names=names,
                                                 parallel=8, force=True))
                c.wait(parent.id, timeout=900)
    finally:
        stop_daemon(daemon)
        if args.real:
            delete_everything(state)
        shutil.rmtree(state, ignore_errors=True)
    steps = [c for c in collections if c["generation"] == -2]
    if first:
        print(f"{first}: {overlapping(steps, first_window)}")
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
        print(f"  slow sample {walls[i]:.1f} ms: {in_gc[i]:.1f} ms in GC ({full[i]} full); "
              + overlapping(steps, windows[i]))
    median = sorted(range(len(walls)), key=lambda i: walls[i])[len(walls) // 2]
    print(f"  median sample {walls[median]:.1f} ms: " + overlapping(steps, windows[median]))
    rest = [w - g for w, g in zip(walls, in_gc, strict=True)]
    print(f"without the GC time: p50 {pct(rest, 50):.1f} ms, p99 {pct(rest, 99):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
