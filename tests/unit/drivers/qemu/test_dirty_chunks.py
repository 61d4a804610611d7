from __future__ import annotations

import json

from corral.drivers.qemu.snapshots import dirty_chunks

MiB = 1 << 20


def test_allocated_extents_name_their_4_mib_chunks() -> None:
    extents = [
        {"start": 0, "length": 8 * MiB, "present": False, "zero": True, "data": False},
        {"start": 8 * MiB, "length": 4 * MiB, "present": True, "zero": False, "data": True},
        {"start": 12 * MiB, "length": 8 * MiB, "present": False, "zero": True, "data": False},
        # a dirty chunk that is now all zero: still changed (its old data must go)
        {"start": 20 * MiB, "length": 8 * MiB, "present": True, "zero": True, "data": False},
        {"start": 28 * MiB, "length": 36 * MiB, "present": False, "zero": True, "data": False},
    ]
    assert dirty_chunks(json.dumps(extents).encode()) == {2, 5, 6}
