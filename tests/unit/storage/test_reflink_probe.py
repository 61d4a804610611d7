"""storage.pools.copy.reflink_works on real file systems: btrfs clones, ext4 does not, and
a btrfs whose data space is full still answers (it raised ENOSPC: `storage list` of a full
pool was a 500)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.host.loopmount import LOOP_CONTROL, MS_NODEV, mount_loop
from corral.host.mounts import unmount
from corral.storage.pools.copy import reflink_works

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="loop devices and mount(2) need root"),
    pytest.mark.skipif(not LOOP_CONTROL.exists(), reason=f"{LOOP_CONTROL} is missing"),
    pytest.mark.skipif(shutil.which("mkfs.btrfs") is None, reason="mkfs.btrfs is missing"),
]


@pytest.fixture
def btrfs(tmp_path: Path) -> Iterator[Path]:
    image, target = tmp_path / "pool.img", tmp_path / "pool"
    with image.open("wb") as file:
        file.truncate(120 << 20)  # about mkfs.btrfs's least
    subprocess.run(["mkfs.btrfs", "-q", "-f", str(image)], check=True, capture_output=True)
    target.mkdir()
    mount_loop(image, target, "btrfs", MS_NODEV)
    try:
        yield target
    finally:
        unmount(target)


def test_a_full_btrfs_still_says_it_clones(btrfs: Path) -> None:
    assert reflink_works(btrfs)
    with (btrfs / "fill").open("wb") as fill, pytest.raises(OSError) as full:
        while True:
            fill.write(b"x" * (1 << 20))
            fill.flush()
            os.fsync(fill.fileno())
    assert full.value.errno == 28  # ENOSPC: the data space is gone
    assert reflink_works(btrfs)
    assert not list(btrfs.glob(".reflink-probe-*"))


def test_a_plain_directory_of_tmp_does_not_clone(tmp_path: Path) -> None:
    if subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True,
                      text=True, check=False).stdout.strip() in ("btrfs", "xfs"):
        pytest.skip("this TMPDIR's file system clones")
    assert not reflink_works(tmp_path)
