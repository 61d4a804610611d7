"""Disk chunks on the wire: ``[offset u64][length u32][op u8][data]*`` per request body.

``op`` 0 writes ``length`` bytes of data at ``offset``; op 1 zeroes ``length`` bytes there
(a chunk that held data before and is a hole now), with no data following.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from corral.domain.errors import InvalidInput

HEADER = struct.Struct("!QIB")
OP_DATA = 0
OP_ZERO = 1


@dataclass(frozen=True)
class Frame:
    offset: int
    length: int
    op: int
    data: bytes = b""


def encode(frames: list[Frame]) -> bytes:
    parts: list[bytes] = []
    for frame in frames:
        if frame.op == OP_DATA and len(frame.data) != frame.length:
            raise InvalidInput("a data frame's length must match its data")
        parts.append(HEADER.pack(frame.offset, frame.length, frame.op))
        if frame.op == OP_DATA:
            parts.append(frame.data)
    return b"".join(parts)


def decode(body: bytes) -> Iterator[Frame]:
    view = memoryview(body)
    position = 0
    while position < len(view):
        if position + HEADER.size > len(view):
            raise InvalidInput("truncated disk frame header")
        offset, length, op = HEADER.unpack_from(view, position)
        position += HEADER.size
        if op == OP_ZERO:
            yield Frame(offset, length, op)
            continue
        if op != OP_DATA:
            raise InvalidInput(f"unknown disk frame op {op}")
        if position + length > len(view):
            raise InvalidInput("truncated disk frame data")
        yield Frame(offset, length, op, bytes(view[position:position + length]))
        position += length
