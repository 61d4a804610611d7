"""The Unix-socket console both drivers use: bytes both ways, EOF, nothing listening."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from corral.domain.errors import HostFailure
from corral.drivers.qemu.console import SocketConsole
from corral.host.sockconsole import UnixConsole


def test_bytes_go_both_ways_and_a_closed_peer_reads_as_eof(tmp_path: Path) -> None:
    path = tmp_path / "console.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)
        console = UnixConsole(path)
        peer, _ = server.accept()
        try:
            console.write(b"ls\n")
            assert peer.recv(16) == b"ls\n"
            peer.sendall(b"bin etc\n")
            assert console.read(64) == b"bin etc\n"
            peer.close()
            assert console.read(64) == b""
        finally:
            console.close()


def test_nothing_listening(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        UnixConsole(tmp_path / "none.sock")
    with pytest.raises(HostFailure, match="cannot open the console"):
        SocketConsole(tmp_path / "none.sock")
