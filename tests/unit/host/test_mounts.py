"""Reading mount points from /proc/self/mountinfo text."""

from __future__ import annotations

import subprocess
from pathlib import Path

from corral.host.mounts import is_mounted, mount_points

MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
95 22 7:0 / /srv/corral/instances/101/run/rootfs rw,nodev - ext4 /dev/loop0 rw
96 22 0:50 / /mnt/with\\040space rw - tmpfs tmpfs rw
"""


def test_mount_points() -> None:
    assert mount_points(MOUNTINFO) == [
        Path("/"),
        Path("/srv/corral/instances/101/run/rootfs"),
        Path("/mnt/with space"),
    ]


def test_is_mounted_reads_this_hosts_mountinfo(tmp_path: Path) -> None:
    """A real tmpfs mounted at a path with a space (escaped as \\040 in mountinfo)."""
    target = tmp_path / "with space"
    target.mkdir()
    assert is_mounted(Path("/")) and not is_mounted(target)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)], check=True)
    try:
        assert is_mounted(target)
        assert is_mounted(tmp_path / "." / "with space")  # compared resolved
    finally:
        subprocess.run(["umount", str(target)], check=True)
    assert not is_mounted(target)


def test_an_image_mount_is_seen_by_its_own_filesystem(tmp_path: Path) -> None:
    """mount_image's cheap check (two stat calls): a real tmpfs at the target is seen."""
    from corral.host.mounts import _own_filesystem

    target = tmp_path / "rootfs"
    target.mkdir()
    assert not _own_filesystem(target)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)], check=True)
    try:
        assert _own_filesystem(target)
    finally:
        subprocess.run(["umount", str(target)], check=True)
    assert not _own_filesystem(target)
