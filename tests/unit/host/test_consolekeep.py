"""host.pty.console_keeper + host/consolekeep.py: a restored container's console pty, kept
by a detached process that logs it and serves one viewer on a Unix socket (a real pty, a
real process; the "container" is the slave side held by this test)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from corral.drivers.lxc.console import RestoredConsole
from corral.host.fdwait import readable


def _until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _read_until(console: RestoredConsole, marker: bytes) -> bytes:
    seen = b""
    while marker not in seen:
        assert readable(console.fileno(), 20), f"no {marker!r} in {seen!r}"
        chunk = console.read(4096)
        assert chunk, f"closed before {marker!r}: {seen!r}"
        seen += chunk
    return seen


def test_keeper_logs_serves_a_viewer_and_ends_with_the_console(tmp_path: Path) -> None:
    from corral.host.pty import console_keeper

    log, sock = tmp_path / "console.log", tmp_path / "console.sock"
    slave = console_keeper(str(log), str(sock))
    try:
        os.write(slave, b"before any viewer\r\n")
        _until(lambda: b"before any viewer" in log.read_bytes(), "logged")
        _until(sock.exists, "its socket")
        assert sock.stat().st_mode & 0o077 == 0  # root's only
        viewer = RestoredConsole(sock, lambda: None)
        try:
            time.sleep(0.1)  # accepted before the next write reaches it
            os.write(slave, b"to the viewer\r\n")
            assert b"to the viewer" in _read_until(viewer, b"to the viewer")
            viewer.write(b"typed\n")  # what a viewer types reaches the console
            got = b""
            while b"typed" not in got:
                assert readable(slave, 20), got
                got += os.read(slave, 100)
            second = RestoredConsole(sock, lambda: None)  # takes the first one's place
            try:
                _until(lambda: readable(viewer.fileno(), 0) and viewer.read(100) == b"",
                       "the first viewer closed")
                time.sleep(0.1)
                os.write(slave, b"second\r\n")
                assert b"second" in _read_until(second, b"second")
            finally:
                second.close()
        finally:
            viewer.close()
        assert b"to the viewer" in log.read_bytes()  # the log has everything
    finally:
        os.close(slave)  # the container stopped: the keeper ends, its socket gone
    _until(lambda: not sock.exists(), "the keeper ended")


def test_without_a_keeper_there_is_no_restored_console(tmp_path: Path) -> None:
    try:
        RestoredConsole(tmp_path / "console.sock", lambda: None)
    except OSError:
        return
    raise AssertionError("connected to nothing")


def test_a_stale_socket_is_not_a_console(tmp_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "console.sock"))
    stale.close()  # bound, nobody listening: a killed keeper's
    try:
        RestoredConsole(tmp_path / "console.sock", lambda: None)
    except OSError:
        return
    raise AssertionError("connected to a dead keeper")
