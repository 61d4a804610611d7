"""A container's console: ``lxc-console`` in a pty of ours (``host/pty.PtyProcess``), and
its window size.

``lxc-console -t 0`` talks to the container's console through LXC's monitor, over a proxy
pty; a window size set on lxc-console's own terminal reaches that proxy but not the
container's console pty (LXC 5.0.2: ``stty size`` in the guest finds no size at all). So a
resize sets the size on the container's console itself: the pty its init has as stdin
(``/proc/PID/fd/0``, reopened with O_NOCTTY), whose foreground process group the kernel
then sends SIGWINCH, as a terminal emulator does.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import termios
from collections.abc import Callable, Sequence

from corral.host.pty import PtyProcess


class LxcConsole(PtyProcess):
    def __init__(self, argv: Sequence[str], init_pid: Callable[[], int | None]) -> None:
        super().__init__(argv)
        self._init_pid = init_pid

    def resize(self, cols: int, rows: int) -> None:
        super().resize(cols, rows)
        pid = self._init_pid()
        if pid is None:
            return
        size = struct.pack("HHHH", rows, cols, 0, 0)
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            fd = os.open(f"/proc/{pid}/fd/0", os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            try:
                if os.isatty(fd):
                    fcntl.ioctl(fd, termios.TIOCSWINSZ, size)
            finally:
                os.close(fd)
