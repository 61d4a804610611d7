"""Churn: 200 create/start/stop/delete cycles of mixed containers and VMs on the real drivers
(tests/system/churnlab.py); prints corrald's fds, threads and RSS and the host's processes,
loop devices, mounts, netdevs, nft rules, tc classes and cgroups before and after.

    .venv/bin/python bench/churn.py [--cts 150] [--vms 50]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corral.templates.builders.tiny import build_tiny
from tests.integration.conftest import real_daemon_in
from tests.system.churnlab import churn, settled


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cts", type=int, default=150)
    parser.add_argument("--vms", type=int, default=50)
    args = parser.parse_args()
    made = Path(tempfile.mkdtemp(prefix="corral-bench-churn-tpl-"))
    template = build_tiny(made)
    state = Path(tempfile.mkdtemp(prefix="corral-bench-churn-"))
    state.chmod(0o711)
    shutil.copytree(template.directory, state / "templates" / "tiny")
    began = time.monotonic()
    try:
        with real_daemon_in(state) as daemon:
            before, after, left = churn(daemon, args.cts, args.vms)
    finally:
        shutil.rmtree(made, ignore_errors=True)  # (its parent is TMPDIR: other runs' too)
    seconds = time.monotonic() - began
    print(f"{args.cts} CT + {args.vms} VM cycles in {seconds:.0f} s")
    print("| measure | before | after |\n|---|---:|---:|")
    for key in before:
        print(f"| {key} | {before[key]} | {after[key]} |")
    bad = settled(before, after) + left
    for line in bad:
        print("NOT BACK:", line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
