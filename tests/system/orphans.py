"""One orphan checker for the fault, churn and restart tests: what a real-driver corrald on a
state directory owns on the host, and what of it has no owner.

An owner is a row of the daemon's database: an instance id. Every host resource the daemon
makes names its state directory (processes' command lines, loop devices' back files, mounts)
or an instance id (netdevs ``c<id>n<k>``, nft rules naming them, cgroups under the daemon's
cgroup root); anything that names neither a listed instance nor was there before is an orphan.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.conftest import daemon_env

NIC = re.compile(r"^c(\d+)n\d+$")


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def _processes(state_dir: Path) -> set[str]:
    """QEMU processes and LXC monitors/inits whose command line names ``state_dir``."""
    found = set()
    for line in _run("ps", "-eo", "pid=,args=").splitlines():
        pid, _, args = line.strip().partition(" ")
        if str(state_dir) in args and ("qemu-system" in args or "lxc" in args):
            found.add(f"{pid} {args}")
    return found


def _loops(state_dir: Path) -> set[str]:
    return {line for line in _run("losetup", "-n", "-l", "-O", "NAME,BACK-FILE").splitlines()
            if str(state_dir) in line}


def _mounts(state_dir: Path) -> set[str]:
    return {line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(str(state_dir))}


def _netdevs() -> set[str]:
    return {name for name in (p.name for p in Path("/sys/class/net").iterdir())
            if NIC.match(name)}


def _nft_devices() -> set[str]:
    return set(re.findall(r"\bc\d+n\d+\b", _run("nft", "list", "ruleset")))


def _cgroups(state_dir: Path, name: str | None = None) -> set[str]:
    """Groups with processes under the daemon's cgroup root (``name``; by default the test
    daemons' for ``state_dir``), in every hierarchy."""
    name = name or daemon_env(state_dir)["CORRAL_CGROUP_ROOT"]
    found = set()
    for root in [Path("/sys/fs/cgroup") / name,
                 *(h / name for h in Path("/sys/fs/cgroup").iterdir() if h.is_dir())]:
        if root.is_dir():
            found |= {str(p.relative_to(root)) for p in root.rglob("*")
                      if p.is_dir() and (p / "cgroup.procs").exists()
                      and (p / "cgroup.procs").read_text().strip()}
    return found


def _cgroup_processes(name: str, group: str) -> str:
    """What runs in ``group`` (under the cgroup root ``name``), for an orphan's report."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        procs = hierarchy / name / group / "cgroup.procs"
        if procs.is_file():
            shown = []
            for pid in procs.read_text().split()[:5]:
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                except OSError:
                    continue
                shown.append(f"{pid} {cmd.decode(errors='replace').strip()[:80]}")
            if shown:
                return "; ".join(shown)
    return "?"


def instance_ids(state_dir: Path) -> dict[int, str]:
    """The database's instances: id -> state."""
    db = sqlite3.connect(state_dir / "corral.db")
    try:
        return {int(i): str(s) for i, s in db.execute("SELECT id, state FROM instances")}
    finally:
        db.close()


def _had_networks(state_dir: Path) -> bool:
    db = sqlite3.connect(state_dir / "corral.db")
    try:
        return bool(db.execute("SELECT COUNT(*) FROM networks").fetchone()[0])
    finally:
        db.close()


@dataclass
class Baseline:
    """Host-wide resources before the test: netdevs and nft names of other daemons."""

    netdevs: set[str] = field(default_factory=_netdevs)
    nft: set[str] = field(default_factory=_nft_devices)


def orphans(state_dir: Path, baseline: Baseline, running: set[int] | None = None,
            cgroup_root: str | None = None) -> list[str]:
    """What ``state_dir``'s corrald owns with no owner. ``running``: the ids whose guests run
    (their processes, cgroups and mounts are owned); by default none may run.
    ``cgroup_root``: the daemon's, when not the test daemons' default (the migration lab)."""
    ids = instance_ids(state_dir)
    running = running or set()
    found: list[str] = []
    own = {str(i) for i in running}
    for proc in _processes(state_dir):
        if not any(f"/{i}/" in proc or f" {i} " in proc or proc.endswith(f" {i}")
                   or f"-n {i}" in proc for i in own):
            found.append(f"process {proc[:160]}")
    pools = str(state_dir / "pools")
    for line in _loops(state_dir):  # a pool's own file system is the daemon's
        if not line.rstrip().endswith(".btrfs") and not any(f"/{i}/" in line for i in running):
            found.append(f"loop device {line}")
    for point in _mounts(state_dir):
        if point.startswith(pools) and "/volumes/" not in point:
            continue
        if not any(f"/{i}/" in point + "/" for i in running):
            found.append(f"mount {point}")
    # NIC names carry only an instance id, which other daemons on this host use too: for a
    # daemon with no network (a NIC joins one; a network with NICs is not deleted), those
    # names are other daemons' (seen here while other helpers' tests ran)
    for name in (_netdevs() - baseline.netdevs) if _had_networks(state_dir) else ():
        match = NIC.match(name)
        if match and int(match.group(1)) not in running:
            found.append(f"netdev {name}")
    for name in (_nft_devices() - baseline.nft) if _had_networks(state_dir) else ():
        match = NIC.match(name)
        if match and int(match.group(1)) not in ids:
            found.append(f"nft rule naming {name}")
    for group in _cgroups(state_dir, cgroup_root):
        if not any(re.search(rf"(^|\D){i}(\D|$)", group) for i in running):
            root = cgroup_root or daemon_env(state_dir)["CORRAL_CGROUP_ROOT"]
            found.append(f"cgroup {group} ({_cgroup_processes(root, group)})")
    instances = state_dir / "instances"
    if instances.is_dir():
        for entry in instances.iterdir():
            if not entry.name.isdigit() or int(entry.name) not in ids:
                found.append(f"instance directory {entry} without a row")
    for state in ids.values():
        if state in ("creating", "deleting"):
            found.append(f"a row left {state}")
    return found
