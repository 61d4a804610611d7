"""Bulk exec over real containers on a 3-member cluster (the longer form of
tests/system/test_cluster_real.py): N tiny CTs per member (real LXC, each corrald in its
network namespace, real etcd), then one command in every one of them.

Timed side by side, each with the same parallelism:

* ``corral exec --selector`` on alpha over all 3N (2N of the items forwarded to their
  members over the members' TLS API, one one-item bulk request each);
* ``corral exec --selector`` on each member over its own N (no forwarding), the three at
  once: the cluster's forwarding cost is the difference;
* raw ``lxc-attach`` (the very command the LXC driver runs, through ``nsenter`` into the
  member's network namespace) over all 3N, straight from this process: the ceiling (NOT
  the same work: no API, no operation records, no table).

Run as root: .venv/bin/python bench/cluster_real.py [--per-member 30] [--parallel 8]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corral.templates.builders.tiny import build_tiny
from tests.system.cluster_lab import NODES, cluster_lab
from tests.system.migration_lab import Host

COMMAND = ("sh", "-c", "hostname")


def timed(what: str, run: Callable[[], object]) -> float:
    began = time.perf_counter()
    run()
    took = time.perf_counter() - began
    print(f"  {what}: {took:.2f} s", flush=True)
    return took


def check(done: subprocess.CompletedProcess[str], what: str) -> None:
    if done.returncode != 0:
        raise SystemExit(f"{what}: {done.stdout}{done.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-member", type=int, default=30)
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()
    n, par = args.per_member, str(args.parallel)
    work = Path(tempfile.mkdtemp(prefix="corral-bench-clreal-"))
    try:
        template = build_tiny(work / "tiny")
        with cluster_lab(template) as lab:
            hosts = lab.hosts
            alpha = hosts["alpha"]

            def make(host: Host) -> None:
                check(host.cli("create", f"bx-{host.name}-{{1..{n}}}", "--type", "ct",
                               "--disk", "64M", "--start", "--label", "role=bx",
                               "--parallel", par, timeout=3600), f"create on {host.name}")

            def each(run: Callable[[Host], None]) -> None:
                with ThreadPoolExecutor(len(NODES)) as pool:
                    list(pool.map(run, hosts.values()))

            for host in hosts.values():  # a 2-CPU host takes 16 CTs under the default 8:1
                check(host.cli("host", "policy", "cpu=none", "memory=none", "disk=none"),
                      f"policy of {host.name}")
            print(f"{3 * n} CTs ({n} per member), parallel {par}:")
            made = timed(f"create --start, {n} per member (the 3 at once)", lambda: each(make))
            deadline = time.monotonic() + 60
            while len([x for x in lab.where(alpha) if x.startswith("bx-")]) < 3 * n:
                if time.monotonic() > deadline:
                    raise SystemExit("alpha never listed them all")
                time.sleep(0.5)

            def cluster_exec() -> None:
                check(alpha.cli("exec", "--selector", "role=bx", "--parallel", par, "--",
                                *COMMAND, timeout=3600), "exec from alpha")

            def own_exec(host: Host) -> None:
                # the names, not the selector: a selector picks the whole cluster's
                check(host.cli("exec", f"bx-{host.name}-{{1..{n}}}", "--parallel", par,
                               "--", *COMMAND, timeout=3600), f"exec on {host.name}")

            ids = []
            for host in hosts.values():
                with host.client() as c:
                    ids += [(host, i.id) for i in c.list_instances(node=host.name)
                            if i.name.startswith("bx-")]

            def raw() -> None:
                def attach(item: tuple[Host, int]) -> None:
                    host, iid = item
                    done = subprocess.run(
                        # LXC's command socket is abstract: in the member's netns
                        ["nsenter", f"--net=/run/netns/{host.netns}",
                         "lxc-attach", "-n", str(iid), "-P", str(host.state_dir / "lxc"),
                         "--clear-env", "--", *COMMAND], capture_output=True, check=False)
                    assert done.returncode == 0, done.stderr
                with ThreadPoolExecutor(args.parallel) as pool:
                    list(pool.map(attach, ids))

            whole = timed(f"exec --selector from alpha over {3 * n}", cluster_exec)
            local = timed(f"exec on each member over its own {n} (the 3 at once)",
                          lambda: each(own_exec))
            ceiling = timed(f"raw lxc-attach over {3 * n} (ceiling)", raw)
            gone = timed(f"delete --selector from alpha over {3 * n}", lambda: check(
                alpha.cli("delete", "--selector", "role=bx", "--force", "--yes",
                          "--parallel", par, timeout=3600), "delete"))
        print(f"exec: cluster/own-members {whole / local:.2f}x, cluster/raw "
              f"{whole / ceiling:.2f}x; {3 * n / made:.1f} creates+starts/s, "
              f"{3 * n / whole:.1f} execs/s, {3 * n / gone:.1f} deletes/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
