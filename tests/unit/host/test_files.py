"""host.files: punching a hole leaves zeros, the size, and no allocation behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.host.files import punch_hole

MIB = 1024 * 1024


def test_punched_range_reads_as_zeros_and_is_deallocated(tmp_path: Path) -> None:
    path = tmp_path / "image"
    path.write_bytes(b"\xab" * (4 * MIB))
    before = os.stat(path).st_blocks
    fd = os.open(path, os.O_RDWR)
    try:
        punch_hole(fd, MIB, 2 * MIB)
        assert os.lseek(fd, MIB, os.SEEK_HOLE) == MIB
    finally:
        os.close(fd)
    data = path.read_bytes()
    assert len(data) == 4 * MIB
    assert data[:MIB] == data[3 * MIB:] == b"\xab" * MIB
    assert data[MIB:3 * MIB] == bytes(2 * MIB)
    assert os.stat(path).st_blocks < before


def test_a_bad_descriptor_is_an_oserror() -> None:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    with pytest.raises(OSError):
        punch_hole(fd, 0, MIB)
