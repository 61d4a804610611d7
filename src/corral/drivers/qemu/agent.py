"""The host side of the guest agent protocol (the guest side is ``templates/guest/corral-agent``).

One request per line over the virtio-serial port ``org.corral.agent``; fields are separated
by one space and data fields are base64, with ``-`` for empty:

    PING <id>                                      -> PONG <id>
    EXEC <id> <timeout|-> <stdin> <arg0> [arg...]  -> RESULT <id> <exit> <stdout> <stderr>
    POWEROFF <id>                                  -> RESULT <id> 0 - -
    (anything the agent cannot do)                 -> ERROR <id> <message>

Replies carry the request id, so a late reply to an abandoned request is skipped.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from corral.domain.errors import HostFailure, InvalidInput
from corral.domain.names import is_decimal

EXEC_GRACE = 5.0  # seconds the host waits beyond the guest-side timeout
MAX_LINE = 64 * 1024**2
"""The longest reply line the host reads (base64 stdout and stderr of an exec included): a
guest that sends more without a newline is cut off, not buffered until corrald's memory
runs out."""


def enc(data: bytes) -> str:
    return base64.b64encode(data).decode() if data else "-"


def dec(field: str) -> bytes:
    if field == "-":
        return b""
    try:
        return base64.b64decode(field, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HostFailure(f"the guest agent sent undecodable data: {exc}") from None


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def encode_exec(request_id: str, argv: list[str], timeout: float | None, stdin: bytes) -> bytes:
    if not argv:
        raise InvalidInput("exec needs a command")
    if any("\0" in arg for arg in argv):
        raise InvalidInput("exec arguments cannot contain NUL bytes")
    limit = "-" if timeout is None else str(max(1, int(-(-timeout // 1))))
    args = " ".join(enc(arg.encode()) for arg in argv)  # "" travels as "-": an empty arg
    return f"EXEC {request_id} {limit} {enc(stdin)} {args}\n".encode()


def encode_simple(verb: str, request_id: str) -> bytes:
    return f"{verb} {request_id}\n".encode()


@dataclass(frozen=True)
class Reply:
    verb: str  # RESULT, PONG or ERROR
    id: str
    exit_code: int = 0
    stdout: bytes = b""
    stderr: bytes = b""
    message: str = ""


def decode_reply(line: bytes) -> Reply:
    words = line.decode(errors="replace").split()
    if len(words) < 2:
        raise HostFailure(f"the guest agent sent a malformed reply: {line[:80]!r}")
    verb, rid = words[0], words[1]
    if verb == "PONG":
        return Reply(verb, rid)
    if verb == "ERROR":
        text = dec(words[2]).decode(errors="replace").strip() if len(words) > 2 else ""
        return Reply(verb, rid, message=text)
    if verb == "RESULT" and len(words) == 5:
        code = int(words[2]) if is_decimal(words[2]) and len(words[2]) <= 3 else -1
        if not 0 <= code <= 255:
            raise HostFailure(f"the guest agent sent a bad exit code {words[2][:20]!r}")
        return Reply(verb, rid, code, dec(words[3]), dec(words[4]))
    raise HostFailure(f"the guest agent sent a malformed reply: {line[:80]!r}")


class AgentClient:
    """One request at a time (a lock file serialises callers across processes)."""

    def __init__(self, socket_path: Path, lock_path: Path) -> None:
        self.socket_path = socket_path
        self.lock_path = lock_path

    def call(self, request: bytes, request_id: str, timeout: float | None) -> Reply:
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return self._call_locked(request, request_id, deadline, timeout)
        finally:
            os.close(fd)

    def _call_locked(
        self, request: bytes, request_id: str, deadline: float | None, timeout: float | None
    ) -> Reply:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(5.0 if deadline is None else max(0.1, deadline - time.monotonic()))
            try:
                sock.connect(str(self.socket_path))
            except OSError as exc:
                raise HostFailure(f"cannot reach the guest agent: {exc}") from exc
            sock.sendall(request)
            buffer = bytearray()
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise HostFailure(f"the guest agent did not answer within {timeout:.0f} s")
                sock.settimeout(remaining)
                try:
                    chunk = sock.recv(1 << 16)
                except TimeoutError:
                    raise HostFailure(
                        f"the guest agent did not answer within {timeout:.0f} s"
                    ) from None
                if not chunk:
                    raise HostFailure("the guest agent connection closed (VM stopped?)")
                buffer += chunk
                if b"\n" not in chunk:
                    if len(buffer) > MAX_LINE:
                        raise HostFailure(f"the guest agent sent a reply longer than "
                                          f"{MAX_LINE // 1024**2} MiB without a line end")
                    continue
                lines = bytes(buffer).split(b"\n")
                buffer = bytearray(lines.pop())
                for line in lines:
                    if not line.strip():
                        continue
                    reply = decode_reply(line)
                    if reply.id == request_id:
                        return reply
        finally:
            sock.close()
