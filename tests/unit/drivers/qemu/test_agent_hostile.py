"""A hostile guest agent: the host side of the protocol (``drivers/qemu/agent.py``) against a
peer socket that answers with garbage, endless lines, other requests' ids, a drip of bytes
or a lie about the exit code. corrald must neither crash, hang past its deadline, run out
of memory, nor take a wrong answer for the right one."""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral.domain.errors import HostFailure
from corral.drivers.qemu import agent

Peer = Callable[[socket.socket], None]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Callable[[Peer], agent.AgentClient]]:
    """Serve one connection with the given behaviour; the client of that socket."""
    path = tmp_path / "agent.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    threads: list[threading.Thread] = []

    def start(behaviour: Peer) -> agent.AgentClient:
        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(4096)
                with contextlib.suppress(OSError):  # the client gave up and closed
                    behaviour(conn)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return agent.AgentClient(path, tmp_path / "agent.lock")

    yield start
    server.close()
    for thread in threads:
        thread.join(timeout=10)


def _send(*lines: bytes) -> Peer:
    def behaviour(conn: socket.socket) -> None:
        for line in lines:
            conn.sendall(line)
        conn.recv(1)
    return behaviour


@pytest.mark.parametrize("garbage", [
    b"\x00\xff\xfe garbage \x1b[2J\n",
    b"RESULT r1 0 !!notbase64!! -\n",
    b"RESULT r1 0 " + "é".encode() + b" -\n",
    b"RESULT r1 -1 - -\n",
    b"RESULT r1 99999999999999999999 - -\n",
    b"RESULT r1 256 - -\n",
    "RESULT r1 ² - -\n".encode(),  # str.isdigit() is true for it, int() is not
    b"RESULT r1\n",
    b"PONG\n",
])
def test_garbage_for_the_request_is_a_clear_failure(
    peer: Callable[[Peer], agent.AgentClient], garbage: bytes
) -> None:
    client = peer(_send(garbage))
    with pytest.raises(HostFailure, match="guest agent"):
        client.call(agent.encode_simple("PING", "r1"), "r1", 5)


def test_other_ids_and_blank_lines_never_answer_the_request(
    peer: Callable[[Peer], agent.AgentClient]
) -> None:
    wrong = [f"RESULT r{n} 0 {b64(b'not yours')} -\n".encode() for n in range(2, 50)]
    client = peer(_send(b"\n\n  \n", *wrong, f"RESULT r1 7 {b64(b'mine')} -\n".encode()))
    reply = client.call(agent.encode_simple("PING", "r1"), "r1", 5)
    assert (reply.id, reply.exit_code, reply.stdout) == ("r1", 7, b"mine")


def test_a_reply_split_across_reads_is_joined(peer: Callable[[Peer], agent.AgentClient]) -> None:
    line = f"RESULT r1 3 {b64(b'x' * 200_000)} -\n".encode()

    def behaviour(conn: socket.socket) -> None:
        for i in range(0, len(line), 777):
            conn.sendall(line[i:i + 777])
        conn.recv(1)

    reply = peer(behaviour).call(agent.encode_simple("PING", "r1"), "r1", 5)
    assert reply.stdout == b"x" * 200_000


def test_an_endless_line_is_cut_off(
    peer: Callable[[Peer], agent.AgentClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent, "MAX_LINE", 1024 * 1024)
    stop = threading.Event()

    def behaviour(conn: socket.socket) -> None:
        while not stop.is_set():  # no newline, ever
            conn.sendall(b"A" * 65536)

    client = peer(behaviour)
    try:
        with pytest.raises(HostFailure, match="without a line end"):
            client.call(agent.encode_simple("PING", "r1"), "r1", 60)
    finally:
        stop.set()


def test_a_drip_of_bytes_does_not_outlast_the_deadline(
    peer: Callable[[Peer], agent.AgentClient]
) -> None:
    stop = threading.Event()

    def behaviour(conn: socket.socket) -> None:
        while not stop.is_set():  # each byte resets a per-read timeout, never the deadline
            conn.sendall(b"P")
            time.sleep(0.02)

    client = peer(behaviour)
    try:
        with pytest.raises(HostFailure, match="did not answer within"):
            client.call(agent.encode_simple("PING", "r1"), "r1", 0.5)
    finally:
        stop.set()


def test_a_peer_that_hangs_up_is_a_clear_failure(
    peer: Callable[[Peer], agent.AgentClient]
) -> None:
    client = peer(lambda conn: conn.sendall(b"RESULT r1 0"))  # then closes
    with pytest.raises(HostFailure, match="connection closed"):
        client.call(agent.encode_simple("PING", "r1"), "r1", 5)
