"""The serial console of a running VM, as a ConsoleStream over QEMU's socket chardev."""

from __future__ import annotations

from pathlib import Path

from corral.domain.errors import HostFailure
from corral.host.sockconsole import UnixConsole


class SocketConsole(UnixConsole):
    def __init__(self, path: Path) -> None:
        try:
            super().__init__(path)
        except OSError as exc:
            raise HostFailure(f"cannot open the console at '{path}': {exc}") from exc


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
