"""Disk frames and the block-level pre-copy/delta on real sparse files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.domain.errors import InvalidInput
from corral.host.files import punch_hole
from corral.migration.frames import OP_DATA, OP_ZERO, Frame, decode, encode
from corral.migration.transfer import CHUNK, DiskCopier, Throttle, apply_frames, data_chunks


def test_frames_round_trip_and_reject_truncation() -> None:
    frames = [Frame(0, 3, OP_DATA, b"abc"), Frame(CHUNK, CHUNK, OP_ZERO),
              Frame(5, 1, OP_DATA, b"z")]
    assert list(decode(encode(frames))) == frames
    with pytest.raises(InvalidInput):
        list(decode(encode(frames)[:-1]))


def _image(path: Path, size: int) -> None:
    with path.open("wb") as f:
        f.truncate(size)


def _write(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


def test_rounds_send_data_then_only_the_delta(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.img", tmp_path / "dst.img"
    size = 64 * CHUNK
    _image(src, size)
    _image(dst, size)
    _write(src, 3 * CHUNK + 17, os.urandom(2 * CHUNK))
    _write(src, 40 * CHUNK, os.urandom(1000))
    assert list(data_chunks(src)) == [3, 4, 5, 40]
    received: list[int] = []

    def send(frames: list[Frame]) -> None:
        received.append(sum(f.length for f in frames if f.op == OP_DATA))
        apply_frames(dst, iter(frames))

    copier = DiskCopier(src, send)
    first = copier.round(lambda _n: None, lambda: None, Throttle(None))
    assert first == 4 * CHUNK  # only chunks holding data; the holes are not read
    assert dst.read_bytes() == src.read_bytes()
    _write(src, 40 * CHUNK + 5, b"changed")  # one chunk changes
    second = copier.round(lambda _n: None, lambda: None, Throttle(None))
    assert second == CHUNK
    assert dst.read_bytes() == src.read_bytes()
    # a chunk that becomes a hole is zeroed on the target
    fd = os.open(src, os.O_RDWR)
    try:
        punch_hole(fd, 40 * CHUNK, CHUNK)
    finally:
        os.close(fd)
    copier.round(lambda _n: None, lambda: None, Throttle(None))
    assert dst.read_bytes() == src.read_bytes()
    assert copier.round(lambda _n: None, lambda: None, Throttle(None)) == 0
