"""Suite-wide guard: the tests must leave no QEMU process, container, loop device or mount.

A snapshot is taken when the session starts; at the end anything new is reported and the
session fails, so a leaking fixture is found the day it leaks.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def _qemu_pids() -> set[str]:
    proc = subprocess.run(["pgrep", "-x", "qemu-system-x86"], capture_output=True, text=True,
                          check=False)
    found = set(proc.stdout.split())
    proc = subprocess.run(["pgrep", "-f", "^qemu-system-x86_64"], capture_output=True,
                          text=True, check=False)
    return found | set(proc.stdout.split())


def _lxc_monitors() -> set[str]:
    proc = subprocess.run(["pgrep", "-a", "-f", r"^\[lxc monitor\]"], capture_output=True,
                          text=True, check=False)
    return set(proc.stdout.splitlines())


def _loops() -> set[str]:
    proc = subprocess.run(["losetup", "-n", "-l", "-O", "NAME,BACK-FILE"], capture_output=True,
                          text=True, check=False)
    return set(proc.stdout.splitlines())


IP_NETNS_DIR = "/run/netns"
"""``ip netns add`` makes this directory a shared bind mount of itself the first time it runs
after a boot and never undoes it (iproute2's bookkeeping, not a test's leak): on a fresh
machine it appears during the suite. Namespaces left under it are caught by ``_netns``."""


def _mounts() -> set[str]:
    points = {line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()}
    return points - {IP_NETNS_DIR}


def _netns() -> set[str]:
    proc = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return set(proc.stdout.splitlines())


PROBES = {
    "qemu processes": _qemu_pids,
    "lxc monitors": _lxc_monitors,
    "loop devices": _loops,
    "mounts": _mounts,
    "network namespaces": _netns,
}
_before: dict[str, set[str]] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    for name, probe in PROBES.items():
        _before[name] = probe()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _before:
        return
    leaks = []
    for name, probe in PROBES.items():
        new = probe() - _before.get(name, set())
        if new:
            leaks.append(f"{name}: {sorted(new)}")
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = "the tests left behind:\n  " + "\n  ".join(leaks)
        if reporter is not None:
            reporter.write_line(text, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
