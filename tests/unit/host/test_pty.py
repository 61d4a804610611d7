"""host.pty.PtyProcess: a command on a pty of ours (started through host.spawn), in its own
session, talked to through the master side."""

from __future__ import annotations

import os
import select

from corral.host.pty import PtyProcess


def _read_until(console: PtyProcess, marker: bytes) -> bytes:
    seen = b""
    while marker not in seen:
        ready, _, _ = select.select([console], [], [], 30)
        assert ready, f"no {marker!r} in {seen!r}"
        chunk = console.read(4096)
        assert chunk, f"the command ended before {marker!r}: {seen!r}"
        seen += chunk
    return seen


def test_the_command_has_a_terminal_and_its_own_session() -> None:
    console = PtyProcess(["sh", "-c", "test -t 0 && test -t 1 && echo is-a-tty; "
                                      "stty raw -echo; cat"], rows=30, cols=100)
    try:
        assert _read_until(console, b"is-a-tty")
        assert os.getsid(console.pid) == console.pid
        assert console.wait_until_raw(30)
        console.write(b"ping\n")
        assert b"ping" in _read_until(console, b"ping")
        assert console.alive()
    finally:
        console.close()
    assert not console.alive()  # ended and reaped by close
    assert console.read(10) == b""


def test_a_command_that_ends_reads_as_closed() -> None:
    console = PtyProcess(["sh", "-c", "echo bye"])
    try:
        assert b"bye" in _read_until(console, b"bye")
        while console.read(4096):
            pass
        assert console.read(10) == b""
    finally:
        console.close()
