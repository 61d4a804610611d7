"""place_while_starting: the daemonized process is found by its pidfile while the launcher
runs (a real shell stands in for QEMU: it writes its pidfile, then keeps initialising)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from corral.drivers.qemu.placement import place_while_starting


def _launch(pidfile: Path, script: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sh", "-c", script, "sh", str(pidfile)])


def test_moves_the_process_named_by_the_pidfile_while_the_launcher_still_runs(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "qemu.pid"
    launcher = _launch(pidfile, 'sleep 0.05; echo $$ > "$1"; sleep 0.3')
    order: list[str] = []
    moved: list[tuple[int, bool]] = []
    try:
        pid = place_while_starting(
            launcher, pidfile, lambda p: p == launcher.pid,
            prepare=lambda: order.append("prepare"),
            move=lambda p: moved.append((p, launcher.poll() is None)))
    finally:
        launcher.wait()
    assert pid == launcher.pid
    assert order == ["prepare"]
    assert moved == [(launcher.pid, True)]  # moved before the launcher finished


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
    assert pid is None and moved == []


def test_a_launcher_that_fails_without_a_pidfile_ends_the_watch(tmp_path: Path) -> None:
    launcher = _launch(tmp_path / "never.pid", "exit 1")
    pid = place_while_starting(launcher, tmp_path / "never.pid", lambda _p: True,
                               prepare=lambda: None, move=lambda _p: None)
    launcher.wait()
    assert pid is None
