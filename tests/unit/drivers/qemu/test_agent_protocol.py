from __future__ import annotations

import base64
import socket
import threading
from pathlib import Path

import pytest

from corral.domain.errors import HostFailure, InvalidInput
from corral.drivers.qemu import agent


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_exec_request_encodes_every_argument_and_stdin() -> None:
    line = agent.encode_exec("r1", ["sh", "-c", "echo hi", ""], 2.5, b"input\n")
    stdin = b64(b"input\n")
    assert line == f"EXEC r1 3 {stdin} {b64(b'sh')} {b64(b'-c')} {b64(b'echo hi')} -\n".encode()
    assert agent.encode_exec("r2", ["true"], None, b"") == f"EXEC r2 - - {b64(b'true')}\n".encode()


def test_exec_request_refuses_empty_argv_and_nul() -> None:
    with pytest.raises(InvalidInput):
        agent.encode_exec("r", [], None, b"")
    with pytest.raises(InvalidInput):
        agent.encode_exec("r", ["a\0b"], None, b"")


def test_replies_decode() -> None:
    reply = agent.decode_reply(f"RESULT r1 3 {b64(b'out')} -".encode())
    assert (reply.verb, reply.id, reply.exit_code, reply.stdout, reply.stderr) == (
        "RESULT",
        "r1",
        3,
        b"out",
        b"",
    )
    assert agent.decode_reply(b"PONG x").verb == "PONG"
    message = b64(b"no command\n")
    err = agent.decode_reply(f"ERROR r2 {message}".encode())
    assert err.message == "no command"


@pytest.mark.parametrize(
    "line", [b"", b"RESULT", b"RESULT r1 x - -", b"RESULT r1 0 !!! -", b"HUH r"]
)
def test_malformed_replies_are_host_failures(line: bytes) -> None:
    with pytest.raises(HostFailure):
        agent.decode_reply(line)


def test_client_skips_stale_replies_and_honours_timeout(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    received: list[bytes] = []

    def serve(replies: list[bytes]) -> None:
        conn, _ = server.accept()
        with conn:
            received.append(conn.recv(4096))
            for reply in replies:
                conn.sendall(reply)
            conn.recv(1)  # hold the connection until the client closes it

    stale = f"RESULT old 1 {b64(b'stale')} -\n".encode()
    thread = threading.Thread(target=serve, args=([stale, b"PONG new\n"],))
    thread.start()
    client = agent.AgentClient(path, tmp_path / "agent.lock")
    reply = client.call(agent.encode_simple("PING", "new"), "new", 5)
    thread.join()
    assert reply.verb == "PONG" and reply.id == "new"
    assert received == [b"PING new\n"]

    thread = threading.Thread(target=serve, args=([],))
    thread.start()
    with pytest.raises(HostFailure, match="did not answer within"):
        client.call(agent.encode_simple("PING", "slow"), "slow", 0.3)
    thread.join()
    server.close()
