"""Long-running host commands that need a terminal (consoles): run inside a pty we own.

``run`` (corral.host.run) is for commands that finish; a console client such as
``lxc-console`` insists on a tty on stdin and stays until closed, so it gets a fresh pty
here and the caller talks to it through the master file descriptor. It starts as every
host command does (``host.spawn``), in a new session with the pty's slave side as its stdin,
stdout and stderr.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import signal
import struct
import sys
import termios
import time
from collections.abc import Sequence
from pathlib import Path

from corral.domain.errors import HostFailure
from corral.host.fdwait import readable
from corral.host.spawn import TimedOut, spawn_on

log = logging.getLogger("corral.host")


class PtyProcess:
    """A command whose stdin/stdout/stderr are the slave side of a new pty.

    It satisfies corral.drivers.base.ConsoleStream: ``fileno`` is the master side (for
    select/poll), ``read`` blocks until bytes arrive and returns b'' once the command exited
    and its output is drained.
    """

    def __init__(self, argv: Sequence[str], rows: int = 24, cols: int = 80) -> None:
        log.debug("spawn in pty %s", " ".join(argv))
        master, slave = os.openpty()
        try:
            _set_size(slave, rows, cols)
            # a new session: the pty becomes its controlling terminal
            self._proc = spawn_on(argv, slave, slave, slave, setsid=True)
        except FileNotFoundError as exc:
            os.close(master)
            raise HostFailure(f"'{argv[0]}' is not installed on this host") from exc
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self._master = master
        self._closed = False

    @property
    def pid(self) -> int:
        return self._proc.pid

    def fileno(self) -> int:
        return self._master

    def alive(self) -> bool:
        return self._proc.poll() is None

    def wait_until_raw(self, timeout: float) -> bool:
        """Wait until the command put its terminal into raw mode (ICANON off), as console
        clients do once attached; input written before that may be flushed by them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not termios.tcgetattr(self._master)[3] & termios.ICANON:
                return True
            if self._proc.poll() is not None:
                return False
            time.sleep(0.005)
        return False

    def output_so_far(self) -> bytes:
        """What the command wrote that nobody read yet (for error messages)."""
        return self.read(65536) if readable(self._master, 0) else b""

    def read(self, size: int) -> bytes:
        if self._closed:
            return b""
        try:
            return os.read(self._master, size)
        except OSError as exc:
            if exc.errno == errno.EIO:  # the slave side is gone: the command exited
                return b""
            raise

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._master, view)
            view = view[written:]

    def resize(self, cols: int, rows: int) -> None:
        """Set the pty's window size: the kernel signals the command (SIGWINCH), and
        ``lxc-console`` passes the size on to the container's console pty."""
        if not self._closed:
            _set_size(self._master, rows, cols)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=3)
            except TimedOut:
                self._proc.kill()
                self._proc.wait()
        self._proc.close()
        with contextlib.suppress(OSError):
            os.close(self._master)


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


KEEPER = str(Path(__file__).with_name("consolekeep.py"))


def console_keeper(log_path: str, socket_path: str) -> int:
    """A new pty for a restored container's console: its master is kept by a detached
    ``consolekeep`` that appends its output to ``log_path``, serves a viewer on
    ``socket_path`` (``corral console``) and ends once every holder of the slave side has
    closed it (the container stopped). Returns the slave side (the caller's to close)."""
    master, slave = os.openpty()
    try:
        log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        try:
            # setsid -f: it runs on in its own session, reparented away from the daemon
            keeper = spawn_on(["setsid", "-f", sys.executable, "-I", "-S", KEEPER,
                               socket_path], master, log_fd, null)
            keeper.wait(10)
        finally:
            os.close(log_fd)
            os.close(null)
    except BaseException:
        os.close(slave)
        raise
    finally:
        os.close(master)
    return slave
