"""The serial console of a running VM, as a ConsoleStream over QEMU's socket chardev."""

from __future__ import annotations

import socket
from pathlib import Path

from corral.domain.errors import HostFailure


class SocketConsole:
    def __init__(self, path: Path) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(str(path))
        except OSError as exc:
            self._sock.close()
            raise HostFailure(f"cannot open the console at '{path}': {exc}") from exc

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


def tail(path: Path, limit: int) -> bytes:
    """The last ``limit`` bytes of ``path`` (empty when it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read()
    except FileNotFoundError:
        return b""
