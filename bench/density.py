"""Density: tiny CTs and VMs started in batches through corrald, all idle and running at once,
and what each batch costs the host and the daemon.

After each batch: host memory used per instance (MemTotal - MemAvailable above the start,
and the mean cgroup charge corrald reports), idle CPU per instance (host-wide busy time over a
few seconds: other work on the host counts too), disk per instance, corrald's RSS and open
fds, ``GET /api/v1/instances`` latency p50/p99 (the API alone; the CLI's own start-up is
reported apart), and the time of one ``GET /api/v1/stats`` and one ``/metrics`` scrape.

``--compare-src DIR`` (another checkout's ``src``, e.g. main's from ``git archive``): at the
end, the same instances listed by that checkout's corrald on the same state directory
(before/after; its database schema must be this one's).

Prints a table, writes a CSV (and a PNG when matplotlib is installed) to a folder it
prints; deletes every instance and its state afterwards.

Run as root: .venv/bin/python bench/density.py [--cts 1000] [--vms 50] [--batch 100]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corral.client import CorralClient
from corral.templates.builders.tiny import build_tiny
from corral.wire.models import CreateRequest
from tests.integration.conftest import (
    Daemon,
    daemon_env,
    remove_empty_cgroups,
    remove_nft_tables,
    start_daemon,
    stop_daemon,
)

MiB = 1 << 20
COLUMNS = ("cts", "vms", "host_mem_mib_per_inst", "cgroup_mem_mib_per_inst",
           "idle_cpu_pct_per_inst", "disk_mib_per_inst", "corrald_rss_mib",
           "corrald_kib_per_inst", "corrald_fds", "list_p50_ms", "list_p99_ms",
           "client_list_p50_ms", "cli_list_s", "stats_s", "metrics_s", "ksm_saved_mib")


def _meminfo() -> dict[str, int]:
    found = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, value = line.partition(":")
        found[key] = int(value.split()[0]) * 1024
    return found


def host_used() -> int:
    info = _meminfo()
    return info["MemTotal"] - info["MemAvailable"]


def cpu_busy_fraction(seconds: float) -> float:
    """Host-wide busy fraction of all CPUs together (1.0 = one CPU fully busy)."""
    def read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)
    busy0, total0 = read()
    time.sleep(seconds)
    busy1, total1 = read()
    cpus = os.cpu_count() or 1
    return (busy1 - busy0) / max(1, total1 - total0) * cpus


def process_figures(pid: int) -> tuple[float, int]:
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return rss / MiB, len(os.listdir(f"/proc/{pid}/fd"))


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))]


def timed(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def list_latency(c: CorralClient, runs: int) -> tuple[float, float]:
    """``GET /api/v1/instances`` as an HTTP request and its whole body (the API's cost; the
    client's parsing into models is ``client_list_latency``)."""
    samples = [timed(lambda: c._http.get("/api/v1/instances").content) for _ in range(runs)]
    return percentile(samples, 50) * 1000, percentile(samples, 99) * 1000


def client_list_latency(c: CorralClient, runs: int) -> float:
    """``CorralClient.list_instances``: the request and a model per instance (p50, ms)."""
    return percentile([timed(c.list_instances) for _ in range(runs)], 50) * 1000


def disk_used(state: Path) -> int:
    total = 0
    for path in (state / "instances").rglob("*"):
        try:
            total += path.lstat().st_blocks * 512
        except OSError:
            continue
    return total


def create_many(daemon: Daemon, names: list[str], kind: str, memory: str, workers: int
                ) -> None:
    local = threading.local()

    def one(name: str) -> None:
        if not hasattr(local, "client"):  # a client is one connection: one per thread
            local.client = daemon.client()
        c: CorralClient = local.client
        op = c.create_instance(CreateRequest(name=name, type=kind, template="tiny",
                                             memory=memory, disk="64M", start=True))
        done = c.wait(op.id, timeout=300)
        if done.status != "success":
            raise RuntimeError(f"create {name}: {done.error}")
    if names:  # the first alone: it builds the template's base image in the pool
        one(names[0])
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, names[1:]))


def start_other(state: Path, src: str) -> subprocess.Popen[bytes]:
    """Another checkout's corrald on the same state directory (same cgroup root)."""
    sock = state / "corral.sock"
    sock.unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "corral.daemon.main", "--state-dir", str(state),
         "--socket", str(sock), "--drivers", "real", "--node", "test-node",
         "--log-level", "warning"],
        stderr=open(state / "corrald-other.log", "ab"),  # noqa: SIM115
        env=dict(daemon_env(state), PYTHONPATH=src), cwd="/",
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with CorralClient(socket=str(sock)) as c:
                c.host_info()
            return process
        except Exception:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the other corrald did not come up")


def scrapes(c: CorralClient, pid: int) -> str:
    """A just-started daemon's first and second ``stats`` and ``/metrics`` (the first has no
    previous CPU sample), each timed, and the daemon's RSS and CPU seconds used by them."""
    def cpu_s() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before = cpu_s()
    figures = [timed(c.metrics), timed(c.metrics), timed(c.all_stats), timed(c.all_stats)]
    used = cpu_s() - before
    rss, _fds = process_figures(pid)
    return ("/metrics first {:.2f} s, second {:.2f} s; stats first {:.2f} s, second {:.2f} s"
            .format(*figures) + f" (daemon CPU {used:.2f} s for the four); RSS {rss:.1f} MiB")


def ksm_saved_mib() -> float:
    from corral.host import ksm

    return ksm.status().saved_bytes / MiB


def measure(daemon: Daemon, c: CorralClient, cts: int, vms: int, base_mem: int,
            base_cpu: float, runs: int, idle_rss: float) -> dict[str, float]:
    n = max(1, cts + vms)
    time.sleep(2)  # let the last starts settle
    cpu = cpu_busy_fraction(3.0)
    rss, fds = process_figures(daemon.process.pid)
    p50, p99 = list_latency(c, runs)
    client_p50 = client_list_latency(c, max(3, runs // 5))
    stats_s = timed(c.all_stats)
    charge = sum(s.memory_used for s in c.all_stats()) / n / MiB
    cli = timed(lambda: daemon.cli("list", "--format", "json"))
    metrics_s = timed(c.metrics)
    return {
        "cts": cts, "vms": vms,
        "host_mem_mib_per_inst": (host_used() - base_mem) / n / MiB,
        "cgroup_mem_mib_per_inst": charge,
        "idle_cpu_pct_per_inst": max(0.0, cpu - base_cpu) / n * 100,
        "disk_mib_per_inst": disk_used(daemon.state_dir) / n / MiB,
        "corrald_rss_mib": rss, "corrald_kib_per_inst": (rss - idle_rss) * 1024 / n,
        "corrald_fds": fds, "list_p50_ms": p50, "list_p99_ms": p99,
        "client_list_p50_ms": client_p50, "cli_list_s": cli,
        "stats_s": stats_s, "metrics_s": metrics_s, "ksm_saved_mib": ksm_saved_mib(),
    }


def print_table(rows: list[dict[str, float]]) -> None:
    print("  ".join(f"{c:>10.10}" for c in COLUMNS))
    for row in rows:
        print("  ".join(f"{row[c]:>10.1f}" if isinstance(row[c], float) else f"{row[c]:>10}"
                        for c in COLUMNS))


def plot(rows: list[dict[str, float]], path: Path) -> None:
    try:
        import matplotlib  # type: ignore[import-not-found]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found]
    except ImportError:
        print("no PNG: matplotlib is not installed (the CSV has every figure)")
        return
    x = [r["cts"] + r["vms"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, keys, label in (
        (axes[0], ("host_mem_mib_per_inst", "cgroup_mem_mib_per_inst"), "MiB per instance"),
        (axes[1], ("idle_cpu_pct_per_inst",), "% CPU per instance"),
        (axes[2], ("list_p50_ms", "list_p99_ms"), "GET /api/v1/instances ms"),
    ):
        for key in keys:
            ax.plot(x, [r[key] for r in rows], marker="o", label=key)
        ax.set_xlabel("instances")
        ax.set_ylabel(label)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cts", type=int, default=1000)
    parser.add_argument("--vms", type=int, default=50)
    parser.add_argument("--batch", type=int, default=100, help="CTs per batch")
    parser.add_argument("--vm-batch", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4, help="parallel API clients")
    parser.add_argument("--runs", type=int, default=30, help="list requests per batch")
    parser.add_argument("--compare-src", help="another checkout's src directory")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--ksm", action="store_true",
                        help="the host policy's ksm=on during the run (put back afterwards)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    out = args.out or Path(tempfile.mkdtemp(prefix="corral-density-"))
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="corral-bench-density-"))
    root.chmod(0o711)
    state = root / "state"
    state.mkdir()
    build_tiny(state / "templates" / "tiny")
    base_mem = host_used()
    base_cpu = cpu_busy_fraction(3.0)
    daemon = start_daemon(state, drivers="real")
    rows: list[dict[str, float]] = []
    cts = vms = 0
    compare: str | None = None
    try:
        with daemon.client() as c:
            # Idle tiny guests: the point is how many fit, not the over-commitment policy.
            c.set_policy({"cpu": "10000", "memory": "100", "disk": "100"})
            if args.ksm:
                c.set_policy({"ksm": "on"})
            idle_rss, _ = process_figures(daemon.process.pid)
            print(f"idle corrald RSS {idle_rss:.1f} MiB; host busy {base_cpu:.2f} CPUs before")
            while cts < args.cts or vms < args.vms:
                n_ct = min(args.batch, args.cts - cts)
                n_vm = min(args.vm_batch, args.vms - vms)
                began = time.monotonic()
                create_many(daemon, [f"d-ct{i}" for i in range(cts, cts + n_ct)], "ct", "64M",
                            args.workers)
                create_many(daemon, [f"d-vm{i}" for i in range(vms, vms + n_vm)], "vm", "128M",
                            min(2, args.workers))
                took = time.monotonic() - began
                cts, vms = cts + n_ct, vms + n_vm
                print(f"batch to {cts} CTs + {vms} VMs: {(n_ct + n_vm) / took:.1f}/s")
                rows.append(measure(daemon, c, cts, vms, base_mem, base_cpu, args.runs,
                                    idle_rss))
                print_table(rows[-1:])
        if args.compare_src:
            stop_daemon(daemon)
            other = start_other(state, args.compare_src)
            try:
                with CorralClient(socket=str(state / "corral.sock")) as c:
                    p50, p99 = list_latency(c, min(args.runs, 10))
                    compare = (f"{args.compare_src}'s corrald, same {cts + vms} instances: "
                               f"GET /api/v1/instances p50 {p50:.0f} ms, p99 {p99:.0f} ms; "
                               + scrapes(c, other.pid))
            finally:
                other.terminate()
                other.wait(30)
            daemon = start_daemon(state, drivers="real")
            with daemon.client() as c:
                mine = scrapes(c, daemon.process.pid)
                compare += f"\nthis tree's corrald, restarted likewise: {mine}"
    finally:
        try:
            with daemon.client() as c:
                ops = [c.delete_instance(i.name, force=True).id for i in c.list_instances()]
                for op in ops:
                    c.wait(op, timeout=300)
        finally:
            if args.ksm:
                with contextlib.suppress(Exception), daemon.client() as c:
                    c.set_policy({"ksm": "off"})
            stop_daemon(daemon)
            remove_nft_tables(state)  # its guests are gone: so go its tables
            remove_empty_cgroups(daemon_env(state)["CORRAL_CGROUP_ROOT"])
            shutil.rmtree(root, ignore_errors=True)
    print()
    print_table(rows)
    if compare:
        print(compare)
    with (out / "density.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"CSV: {out / 'density.csv'}")
    plot(rows, out / "density.png")


if __name__ == "__main__":
    main()
