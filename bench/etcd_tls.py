"""etcd over TLS with client certificates vs plain HTTP: the same EtcdClient calls (a put
and a linearizable get per round, one kept-alive connection) against a one-member etcd on
loopback, each way; prints calls/s, p50/p99 and the TLS/plain ratio. Also one new client's
first call (a fresh TLS handshake), as a corrald pays it at start and a CLI never does.

Run: .venv/bin/python bench/etcd_tls.py [--rounds 500]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: F401  (loaded before timing: a client's first call pays no import)

from corral.cluster.etcd import EtcdClient
from tests.integration.etcd_lab import etcd_lab


def measure(directory: Path, tls: bool, rounds: int) -> tuple[float, float, float, float]:
    """(calls/s, p50 ms, p99 ms, first call ms) of put+get rounds."""
    with etcd_lab(directory, size=1, tls=tls) as lab:
        started = time.perf_counter()
        client = EtcdClient(lab.endpoints, tls=lab.tls)
        client.get("/bench/none")
        first = (time.perf_counter() - started) * 1000
        times: list[float] = []
        try:
            for i in range(rounds):
                t0 = time.perf_counter()
                client.put(f"/bench/{i % 50}", b"x" * 200)
                client.get(f"/bench/{i % 50}")
                times.append(time.perf_counter() - t0)
        finally:
            client.close()
    times.sort()
    total = sum(times)
    return (2 * rounds / total, statistics.median(times) * 1000,
            times[int(len(times) * 0.99) - 1] * 1000, first)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="corral-etcdtls-") as root:
        plain = measure(Path(root) / "plain", False, args.rounds)
        tls = measure(Path(root) / "tls", True, args.rounds)
    for name, (rate, p50, p99, first) in (("plain http", plain), ("tls + client cert", tls)):
        print(f"{name:18} {rate:8.0f} calls/s  round p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
              f"first call {first:6.1f} ms")
    print(f"ratio tls/plain: round p50 {tls[1] / plain[1]:.2f}x, "
          f"calls/s {tls[0] / plain[0]:.2f}x, first call {tls[3] / plain[3]:.2f}x")


if __name__ == "__main__":
    main()
