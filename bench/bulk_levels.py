"""Does the bulk CT rate fall with the number of CTs already running? Fill in steps, probe at
each level.

Starts a real-driver corrald, then for each level in ``--levels`` (e.g. 0,400,800): one bulk
create+start up to that many running CTs, timed, with corrald's CPU per item (its own; the
tools it ran) and the host's busy share; then, at that level, the host's mount table size
and the median wall time of ``lxc-start -d`` of ``--probe`` prepared containers (the raw
ceiling's work, one after another). The other helpers' load moves every rate on a shared
host: compare fills run back to back, and read corrald's CPU per item beside them.

Run as root: .venv/bin/python bench/bulk_levels.py [--levels 0,400,800] [--probe 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bulk import cpu_seconds, host_cpu
from start import RawContainer

from corral.client import CorralClient
from corral.domain.bulk import BulkAction
from corral.templates.builders.tiny import build_tiny
from corral.wire.bulk import BulkCreate, BulkRequestModel
from tests.integration.conftest import delete_everything, start_daemon, stop_daemon

MAX_NAMES = 1000
"""The most names one bulk request takes (the API refuses more)."""
SPEC = BulkCreate(type="ct", template="tiny", memory="64M", disk="64M", start=True)


def bulk(c: CorralClient, request: BulkRequestModel) -> tuple[float, int]:
    """Seconds the bulk took; how many items succeeded."""
    began = time.monotonic()
    parent = c.bulk(request)
    c.wait(parent.id, 900)
    took = time.monotonic() - began
    return took, sum(1 for ch in c.children(parent.id) if ch.status == "success")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="0,400,800")
    parser.add_argument("--probe", type=int, default=4)
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    levels = [int(v) for v in args.levels.split(",")]
    root = Path(tempfile.mkdtemp(prefix="corral-bench-levels-"))
    root.chmod(0o711)
    state = root / "state"
    state.mkdir()
    build_tiny(state / "templates" / "tiny")
    daemon = start_daemon(state, drivers="real")
    pid = daemon.process.pid
    raws: list[RawContainer] = []
    try:
        with daemon.client() as c:
            c.set_policy({"cpu": "none", "memory": "none", "disk": "none"})
            probes = [f"probe-{i}" for i in range(args.probe)]
            made = BulkCreate(type="ct", template="tiny", memory="64M", disk="64M", start=False)
            bulk(c, BulkRequestModel(action=BulkAction.CREATE, names=probes, create=made))
            for name in probes:  # the base image is made by now: the fills do not pay it
                got = c.get_instance(name)
                raws.append(RawContainer(daemon, c, name, got.id, root / f"raw-{got.id}"))
            running = 0
            for level in levels:
                if level > running:
                    names = [f"lv-{i}" for i in range(running, level)]
                    cpu_before, host_before = cpu_seconds(pid), host_cpu()
                    took, ok = bulk(c, BulkRequestModel(action=BulkAction.CREATE, names=names,
                                                        parallel=args.parallel, create=SPEC))
                    cpu_after, host_after = cpu_seconds(pid), host_cpu()
                    busy = (host_after[0] - host_before[0]) / max(1, host_after[1]
                                                                   - host_before[1])
                    per = 1000 / max(1, ok)
                    print(f"fill {running}->{level}: {ok} in {took:.2f} s = {ok / took:.1f}/s;"
                          f" corrald {per * (cpu_after[0] - cpu_before[0]):.1f} ms CPU per "
                          f"item, its tools {per * (cpu_after[1] - cpu_before[1]):.1f} ms; "
                          f"host CPUs {100 * busy:.0f} % busy; load "
                          f"{os.getloadavg()[0]:.1f}", flush=True)
                    running = level
                mounts = len(Path("/proc/self/mountinfo").read_text().splitlines())
                starts = []
                for raw in raws:
                    starts.append(raw.start())
                for raw in raws:
                    raw.stop()
                print(f"at {running} running: {mounts} host mounts; raw lxc-start -d (mount "
                      f"+ start) median {1000 * statistics.median(starts):.0f} ms of "
                      f"{len(starts)}; load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        for raw in raws:
            try:
                raw.stop()
            except Exception as exc:  # cleanup goes on (most are stopped already)
                del exc
        try:
            with daemon.client() as c:
                names = [i.name for i in c.list_instances()]
                for first in range(0, len(names), MAX_NAMES):  # a request takes up to 1000
                    bulk(c, BulkRequestModel(action=BulkAction.DELETE,
                                             names=names[first:first + MAX_NAMES],
                                             parallel=args.parallel, force=True))
        finally:
            stop_daemon(daemon)
            delete_everything(state)  # what is left, and the daemon's nft tables
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
