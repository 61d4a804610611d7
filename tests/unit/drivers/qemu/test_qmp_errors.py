"""A QMP socket that accepts but never greets (a QEMU too busy to answer): the error says
what happened, never an empty reason."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from corral.domain.errors import HostFailure
from corral.drivers.qemu.qmp import Monitor, _Hub


def test_a_silent_qmp_socket_times_out_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "qmp.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen()
        monitor = Monitor(path, _Hub())
        with pytest.raises(HostFailure) as failed:
            monitor.execute("query-status", timeout=0.2)
        monitor.close()
    assert failed.value.message == f"QMP at '{path}' unreachable: TimeoutError"
