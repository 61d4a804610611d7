"""Churn: create, start, stop, delete cycles of containers and VMs on a real-driver corrald,
and what the host and corrald hold before and after (bench/churn.py; a bounded run in
tests/system/test_churn_real.py). One warm-up cycle of each kind runs before the baseline:
corrald's operation threads and caches are made on first use and kept."""

from __future__ import annotations

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
    return {
        "fds": len(list(Path(f"/proc/{pid}/fd").iterdir())),
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
    threads not above the baseline + 2, RSS within 16 MiB."""
    bad = [f"{key}: {before[key]} -> {after[key]}" for key in before
           if key not in ("fds", "threads", "rss_kib") and after[key] != before[key]]
    if after["fds"] > before["fds"] + 2:
        bad.append(f"fds: {before['fds']} -> {after['fds']}")
    if after["threads"] > before["threads"] + 2:
        bad.append(f"threads: {before['threads']} -> {after['threads']}")
    if after["rss_kib"] > before["rss_kib"] + 16 * 1024:
        bad.append(f"rss_kib: {before['rss_kib']} -> {after['rss_kib']}")
    return bad
