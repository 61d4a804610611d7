"""Cluster listing and placement: ``GET /api/v1/instances`` of N instances (fake driver) on
one host vs the same N spread over 3 cluster members (asked on one member: its own from its
database, the others' from the cluster store), and creates/s through placement.

Goal (issue 16): the cluster list within 2x the single host's, p99 <= 100 ms. The API is
timed alone (CorralClient over the Unix socket, in this process); the CLI's own start-up is
reported apart (one `corral list --format json` wall time).

Run: .venv/bin/python bench/cluster.py [--instances 1000] [--rounds 50] [--creates 60]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corral.client import CorralClient
from corral.wire.models import CreateRequest
from tests.integration.conftest import Daemon, start_daemon, stop_daemon, write_fake_template
from tests.integration.etcd_lab import etcd_lab


def up(root: Path, node: str) -> Daemon:
    write_fake_template(root / node / "templates")
    d = start_daemon(root / node, node=node)
    d.cli("host", "policy", "cpu=none", "memory=none", "disk=none", check=True)
    return d


def fill(d: Daemon, prefix: str, count: int, node: str | None = None) -> None:
    def make(i: int) -> None:
        with CorralClient(socket=str(d.socket)) as c:
            op = c.create_instance(CreateRequest(name=f"{prefix}{i}", type="ct",
                                                 template="tiny", node=node))
            c.wait(op.id)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(make, range(count)))


def timed_list(d: Daemon, rounds: int, expect: int) -> tuple[float, float]:
    samples = []
    with CorralClient(socket=str(d.socket)) as c:
        assert len(c.list_instances()) == expect  # warm, and the whole set is there
        for _ in range(rounds):
            began = time.perf_counter()
            c.list_instances()
            samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def cli_wall(d: Daemon) -> float:
    began = time.perf_counter()
    d.cli("list", "--format", "json", check=True)
    return (time.perf_counter() - began) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--creates", type=int, default=60)
    args = parser.parse_args()
    n = args.instances
    root = Path(tempfile.mkdtemp(prefix="corral-bench-cluster-"))
    daemons: list[Daemon] = []
    try:
        with etcd_lab(root / "etcd") as lab:
            solo = up(root, "solo")
            daemons.append(solo)
            fill(solo, "s", n)
            one = timed_list(solo, args.rounds, n)
            one_cli = cli_wall(solo)
            stop_daemon(solo)
            daemons.remove(solo)

            hosts = [up(root, node) for node in ("alpha", "beta", "gamma")]
            daemons.extend(hosts)
            hosts[0].cli("cluster", "init", "--etcd", ",".join(lab.endpoints), *lab.cli_tls,
                         check=True)
            for d in hosts[1:]:
                d.cli("cluster", "join", hosts[0].url, "--token", hosts[0].token, check=True)
            shares = [n // 3, n // 3, n - 2 * (n // 3)]
            for d, share, node in zip(hosts, shares, ("alpha", "beta", "gamma"), strict=True):
                fill(d, node[0], share, node)
            deadline = time.monotonic() + 60  # published at the next beats
            while time.monotonic() < deadline:
                with CorralClient(socket=str(hosts[0].socket)) as c:
                    if len(c.list_instances()) == n:
                        break
                time.sleep(0.5)
            three = timed_list(hosts[0], args.rounds, n)
            three_cli = cli_wall(hosts[0])

            began = time.perf_counter()
            with ThreadPoolExecutor(6) as pool:
                def place(i: int) -> None:
                    with CorralClient(socket=str(hosts[i % 3].socket)) as c:
                        c.create_instance(CreateRequest(name=f"placed{i}", type="ct",
                                                        template="tiny"))
                list(pool.map(place, range(args.creates)))
            rate = args.creates / (time.perf_counter() - began)
            nodes: list[str] = []
            deadline = time.monotonic() + 60  # the other members' publish at their next beat
            while time.monotonic() < deadline and len(nodes) < args.creates:
                time.sleep(0.5)
                with CorralClient(socket=str(hosts[0].socket)) as c:
                    nodes = [i.node for i in c.list_instances() if i.name.startswith("placed")]
    finally:
        for d in daemons:
            stop_daemon(d)
        subprocess.run(["rm", "-rf", str(root)], check=False)
    print(f"GET /api/v1/instances, {n} instances (fake driver), {args.rounds} rounds:")
    print(f"{'':24}{'p50 ms':>10}{'p99 ms':>10}{'CLI wall ms':>14}")
    print(f"{'one host':24}{one[0]:10.1f}{one[1]:10.1f}{one_cli:14.0f}")
    print(f"{'3 members (on alpha)':24}{three[0]:10.1f}{three[1]:10.1f}{three_cli:14.0f}")
    print(f"ratio cluster/one host: p50 {three[0] / one[0]:.2f}x, p99 {three[1] / one[1]:.2f}x "
          f"(goal <= 2x, p99 <= 100 ms)")
    spread = {node: nodes.count(node) for node in sorted(set(nodes))}
    print(f"placement: {args.creates} creates without --node through 3 members: "
          f"{rate:.1f} creates/s, placed {spread}")


if __name__ == "__main__":
    main()
