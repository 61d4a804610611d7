"""A console viewer resizes the guest's terminal: through a real pty (``host/pty.py``), as
a container's ``lxc-console`` runs; a stream with no window size (a VM's serial line) says
it cannot. And the websocket's resize control message (``api/streams._resize_of``)."""

from __future__ import annotations

import queue
import socket

from corral.api.streams import _resize_of
from corral.host.pty import PtyProcess
from corral.services.consoles import ConsoleHub
from tests.unit.services.test_consoles import WAIT, SocketStream


def _until(seen: queue.Queue[bytes], text: bytes) -> bytes:
    got = b""
    while text not in got:
        got += seen.get(timeout=WAIT)
    return got


def test_a_viewer_resizes_the_terminal_of_a_pty_console() -> None:
    hub = ConsoleHub(linger=0.1)
    seen: queue.Queue[bytes] = queue.Queue()
    # the guest prints its terminal's size each time a line is typed
    guest = PtyProcess(["sh", "-c", "while read line; do stty size; done"])
    viewer = hub.attach(1, lambda: guest, seen.put)
    try:
        viewer.write(b"\n")
        _until(seen, b"24 80")  # the pty's first size
        assert viewer.resize(132, 43)
        viewer.write(b"\n")
        _until(seen, b"43 132")
    finally:
        viewer.close()
        hub.close()  # its reader thread closes the pty (and ends the shell)
        guest.close()


def test_a_console_without_a_window_size_says_so() -> None:
    hub = ConsoleHub(linger=0.1)
    ours, theirs = socket.socketpair()
    stream = SocketStream(ours)
    viewer = hub.attach(2, lambda: stream, lambda _data: None)
    try:
        assert viewer.resize(100, 30) is False
    finally:
        viewer.close()
        hub.close()
        theirs.close()


def test_the_resize_control_message() -> None:
    assert _resize_of('{"resize": [120, 40]}') == (120, 40)
    for bad in ('{"resize": [0, 40]}', '{"resize": [120]}', '{"resize": ["a", 4]}',
                '{"resize": [5000, 40]}', "not json", "[1, 2]", '{"other": 1}'):
        assert _resize_of(bad) is None, bad
