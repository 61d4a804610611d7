"""Load: N concurrent API clients for S seconds against M instances (fake driver), reads and
writes mixed (tests/integration/loadlab.py). Prints p50/p99 per route, the status counts, and
whether any operation was lost or duplicated; exits 1 on a 5xx or a bookkeeping error.

    .venv/bin/python bench/load.py                       # 50 clients, 60 s, 1000 instances
    .venv/bin/python bench/load.py --clients 10 --seconds 5 --instances 100
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.conftest import start_daemon, stop_daemon, write_fake_template
from tests.integration.loadlab import run, seed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--instances", type=int, default=1000)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="corral-bench-load-"))
    write_fake_template(state / "templates")
    daemon = start_daemon(state)
    try:
        began = time.monotonic()
        names = seed(str(daemon.socket), args.instances)
        print(f"seeded {len(names)} instances in {time.monotonic() - began:.1f} s")
        result = run(str(daemon.socket), names, args.clients, args.seconds)
    finally:
        stop_daemon(daemon)
        shutil.rmtree(state, ignore_errors=True)
    total = sum(len(v) for v in result.latencies.values())
    print(f"{args.clients} clients x {args.seconds:g} s against {args.instances} instances "
          f"(fake driver, {os.cpu_count()} CPUs): {total} requests, {total / args.seconds:.0f}/s, "
          f"{len(result.operations)} operations checked, {result.server_errors} server errors")
    print(result.table())
    for error in result.errors[:20]:
        print("ERROR", error)
    return 1 if result.errors or result.server_errors else 0


if __name__ == "__main__":
    sys.exit(main())
