"""Reading mount points from /proc/self/mountinfo text."""

from __future__ import annotations

from pathlib import Path

from corral.host.mounts import mount_points

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
