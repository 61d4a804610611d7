"""systemd's journal, spoken natively: structured entries as datagrams on its socket.

The native protocol (systemd.journal-fields(7), "Native Journal Protocol"): one datagram per
entry, each field ``NAME=value\\n``; a value holding a newline is sent as ``NAME\\n``, its
length as a little-endian 64-bit integer, the bytes, ``\\n``. Field names are upper-case
letters, digits and underscores, not starting with an underscore (those are the journal's
own, trusted fields). Written here, not taken from a library: it is a dozen lines, and
python-systemd needs libsystemd's headers to build.
"""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Mapping
from pathlib import Path

SOCKET = Path("/run/systemd/journal/socket")
MAX_VALUE = 48 * 1024  # a longer value is cut (a datagram must fit the socket's buffer)
_NAME = re.compile(r"[A-Z0-9][A-Z0-9_]{0,63}")


def available(path: Path = SOCKET) -> bool:
    """Whether a journal listens at ``path`` (systemd runs this host)."""
    return path.is_socket()


def encode(fields: Mapping[str, str]) -> bytes:
    """One entry in the native protocol; ValueError for a name the journal would drop."""
    parts = []
    for name, value in fields.items():
        if not _NAME.fullmatch(name):
            raise ValueError(f"'{name}' is not a journal field name")
        data = value.encode("utf-8", "replace")[:MAX_VALUE]
        if b"\n" in data:
            parts.append(name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            parts.append(name.encode() + b"=" + data + b"\n")
    return b"".join(parts)


class Journal:
    """A datagram socket to the journal; ``send`` never raises (a log must not fail work)."""

    def __init__(self, path: Path = SOCKET) -> None:
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.dropped = 0

    def send(self, fields: Mapping[str, str]) -> bool:
        try:
            self._socket.sendto(encode(fields), str(self.path))
            return True
        except (OSError, ValueError):  # journald restarting or gone, a full buffer
            self.dropped += 1
            return False

    def close(self) -> None:
        self._socket.close()
