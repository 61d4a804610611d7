"""place_while_starting: the launcher is moved, then the daemonized process found by its
pidfile while the launcher runs (a real shell stands in for QEMU: it forks the long-lived
process, which writes its pidfile, then keeps initialising)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from corral.domain.errors import HostFailure
from corral.drivers.qemu.placement import place_while_starting


def _launch(pidfile: Path, script: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sh", "-c", script, "sh", str(pidfile)])


def test_moves_the_launcher_then_the_process_named_by_the_pidfile_while_it_runs(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "qemu.pid"
    # like QEMU: the launcher forks the long-lived process, which writes the pidfile
    launcher = _launch(pidfile, 'sleep 0.05; sleep 0.3 & echo $! > "$1"; sleep 0.2')
    order: list[str] = []
    moved: list[tuple[int, bool]] = []
    try:
        pid = place_while_starting(
            launcher, pidfile, lambda p: p != launcher.pid,
            prepare=lambda: order.append("prepare"),
            move=lambda p: moved.append((p, launcher.poll() is None)))
    finally:
        launcher.wait()
    assert pid is not None and pid != launcher.pid
    assert order == ["prepare"]
    # the launcher first (its child is then born in the group), both before it finished
    assert moved == [(launcher.pid, True), (pid, True)]


def test_a_launcher_gone_before_its_move_is_no_error(tmp_path: Path) -> None:
    pidfile = tmp_path / "qemu.pid"
    launcher = _launch(pidfile, 'echo $$ > "$1"')
    launcher.wait()
    moved: list[int] = []

    def move(pid: int) -> None:
        if not moved:
            moved.append(pid)
            raise HostFailure("cannot write: No such process")
        moved.append(pid)

    pid = place_while_starting(launcher, pidfile, lambda p: p == launcher.pid,
                               prepare=lambda: None, move=move)
    assert pid == launcher.pid and moved == [launcher.pid, launcher.pid]


def test_a_failed_move_of_a_running_launcher_is_raised(tmp_path: Path) -> None:
    launcher = _launch(tmp_path / "qemu.pid", "sleep 5")

    def move(_pid: int) -> None:
        raise HostFailure("cannot write to cgroup.procs: Permission denied")

    try:
        with pytest.raises(HostFailure, match="Permission denied"):
            place_while_starting(launcher, tmp_path / "qemu.pid", lambda _p: True,
                                 prepare=lambda: None, move=move)
    finally:
        launcher.kill()
        launcher.wait()


def test_a_foreign_pid_in_the_pidfile_is_not_moved(tmp_path: Path) -> None:
    pidfile = tmp_path / "qemu.pid"
    pidfile.write_text("1\n")  # a stale file naming another process
    launcher = _launch(pidfile, "sleep 0.1")
    moved: list[int] = []
    try:
        pid = place_while_starting(launcher, pidfile, lambda p: p == launcher.pid,
                                   prepare=lambda: None, move=moved.append)
    finally:
        launcher.wait()
    assert pid is None and moved == [launcher.pid]  # the launcher only, never pid 1


def test_a_launcher_that_fails_without_a_pidfile_ends_the_watch(tmp_path: Path) -> None:
    launcher = _launch(tmp_path / "never.pid", "exit 1")
    pid = place_while_starting(launcher, tmp_path / "never.pid", lambda _p: True,
                               prepare=lambda: None, move=lambda _p: None)
    launcher.wait()
    assert pid is None
