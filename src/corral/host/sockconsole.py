"""A console stream over a Unix stream socket.

QEMU's serial chardev and the keeper of a restored container's pty (``host/consolekeep.py``)
both speak a console's bytes both ways over one: the drivers' consoles share this one reader
and writer (a read error is the end of the stream, as EOF is) and add what differs (the
error a caller sees when nothing listens; a container's window size).
"""

from __future__ import annotations

import socket
from pathlib import Path


class UnixConsole:
    """Connected to ``path`` at construction; OSError where nothing listens there."""

    def __init__(self, path: Path) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(str(path))
        except OSError:
            self._sock.close()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self, size: int) -> bytes:
        try:
            return self._sock.recv(size)
        except OSError:
            return b""

    def write(self, data: bytes) -> None:
        self._sock.sendall(data)

    def close(self) -> None:
        self._sock.close()
