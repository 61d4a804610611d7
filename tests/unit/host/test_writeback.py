"""host/writeback.py: queueing a file's write-back changes nothing in it and never fails."""

from __future__ import annotations

import os
from pathlib import Path

from corral.host.writeback import start_writeback


def test_write_back_keeps_the_file_and_ignores_a_missing_one(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    data = os.urandom(1 << 16)
    image.write_bytes(data)
    start_writeback(image)
    assert image.read_bytes() == data
    start_writeback(tmp_path / "gone.img")  # best effort: nothing raised
