"""Churn: create, start, stop, delete cycles of containers and VMs on a real-driver corrald,
and what the host and corrald hold before and after (bench/churn.py; a bounded run in
tests/system/test_churn_real.py). One warm-up cycle of each kind runs before the baseline:
corrald's operation threads and caches are made on first use and kept."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.integration.conftest import Daemon
from tests.system.orphans import Baseline, _cgroups, _loops, _mounts, _processes, orphans


def measure(daemon: Daemon) -> dict[str, int]:
    """corrald's fds, threads and RSS (KiB); the host's resources the daemon owns."""
    pid = daemon.process.pid
    status = Path(f"/proc/{pid}/status").read_text()
    nft = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True,
                         check=False).stdout
    tc = 0
    devices = [p.name for p in Path("/sys/class/net").iterdir()
               if re.match(r"^c\d+n\d+$", p.name)]
    for dev in devices:
        tc += len(subprocess.run(["tc", "class", "show", "dev", dev], capture_output=True,
                                 text=True, check=False).stdout.splitlines())
    targets = fd_targets(daemon)
    db = sum(1 for t in targets if Path(t).name.startswith("corral.db"))
    return {
        "fds": len(targets) - db,
        "db_fds": db,
        "threads": int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1)),  # type: ignore[union-attr]
        "rss_kib": int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1)),  # type: ignore[union-attr]
        "processes": len(_processes(daemon.state_dir)),
        "loop_devices": len(_loops(daemon.state_dir)),
        "mounts": len(_mounts(daemon.state_dir)),
        "netdevs": len(devices),
        "nft_rules": sum(1 for line in nft.splitlines() if re.search(r"\bc\d+n\d+\b", line)),
        "tc_classes": tc,
        "cgroups": len(_cgroups(daemon.state_dir)),
    }


def fd_targets(daemon: Daemon) -> list[str]:
    """What corrald's descriptors point at (to name a leak)."""
    found = []
    for fd in Path(f"/proc/{daemon.process.pid}/fd").iterdir():
        try:
            found.append(os.readlink(fd))
        except OSError:
            continue
    return sorted(found)


def cycle(daemon: Daemon, name: str, kind: str) -> None:
    size = ("--disk", "256M") if kind == "ct" else ("--disk", "1G", "--memory", "256M")
    daemon.cli("create", name, "--type", kind, "--template", "tiny", *size, check=True)
    daemon.cli("start", name, check=True)
    daemon.cli("stop", name, "--force", check=True)
    daemon.cli("delete", name, check=True)


def churn(daemon: Daemon, cts: int, vms: int) -> tuple[dict[str, int], dict[str, int], list[str]]:
    """(before, after, orphans): ``cts`` container and ``vms`` VM cycles, interleaved."""
    baseline = Baseline()
    cycle(daemon, "warm-ct", "ct")
    if vms:
        cycle(daemon, "warm-vm", "vm")
    before = measure(daemon)
    kinds = ["ct"] * cts + ["vm"] * vms
    order = sorted(range(len(kinds)), key=lambda i: (i * 7919) % max(1, len(kinds)))
    for n, i in enumerate(order):
        cycle(daemon, f"churn{n}", kinds[i])
    after = measure(daemon)
    return before, after, orphans(daemon.state_dir, baseline)


def settled(before: dict[str, int], after: dict[str, int]) -> list[str]:
    """What did not return to the baseline: host resources exactly; corrald's fds within 2,
    threads not above the baseline + 2, RSS within 16 MiB. SQLite's descriptors (``db_fds``)
    are one connection per live thread (state/database.py closes it when its thread ends;
    the API's worker threads come and go), bounded by the threads, not by the cycles: at most
    2 per live thread."""
    bad = [f"{key}: {before[key]} -> {after[key]}" for key in before
           if key not in ("fds", "db_fds", "threads", "rss_kib")
           and after[key] != before[key]]
    if after["fds"] > before["fds"] + 2:
        bad.append(f"fds: {before['fds']} -> {after['fds']}")
    if after["threads"] > before["threads"] + 2:
        bad.append(f"threads: {before['threads']} -> {after['threads']}")
    if after["db_fds"] > 2 * after["threads"]:  # a connection (db, wal) per live thread
        bad.append(f"db_fds: {before['db_fds']} -> {after['db_fds']}")
    if after["rss_kib"] > before["rss_kib"] + 16 * 1024:
        bad.append(f"rss_kib: {before['rss_kib']} -> {after['rss_kib']}")
    return bad
