"""Backup throughput against `zstd | sha256sum` over the same image, incremental size after a
~1 % change, and snapshot (copy-on-write clone) time at 1 GiB and 8 GiB disks.

    .venv/bin/python bench/backup.py [--size-mib 512]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import tempfile
import time
from pathlib import Path

from corral.backup.crypto import Codec
from corral.backup.engine import backup_image
from corral.backup.manifest import InstanceInfo
from corral.backup.store import ChunkStore
from corral.backup.targets import LocalTarget
from corral.drivers.snapshots import clone

MiB = 1 << 20


def make_image(path: Path, size: int, data: int) -> None:
    """Half random (incompressible), half text-like (compressible) data, rest holes."""
    rng = random.Random(1)
    words = [bytes(rng.choice(b"abcdefghij klmnop") for _ in range(8)) for _ in range(512)]
    with path.open("wb") as f:
        f.truncate(size)
        written = 0
        while written < data:
            block = os.urandom(MiB) if (written // MiB) % 2 else b"".join(
                rng.choices(words, k=MiB // 8))
            f.write(block[:MiB])
            written += MiB


def timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=512)
    args = parser.parse_args()
    size = args.size_mib * MiB
    with tempfile.TemporaryDirectory(prefix="corral-bench-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        image = root / "root.img"
        make_image(image, size, size * 3 // 4)
        subprocess.run(["cat", str(image)], stdout=subprocess.DEVNULL, check=True)  # warm
        raw = timed(lambda: subprocess.run(
            f"zstd -3 -T1 -q -c {image} | sha256sum", shell=True, check=True,
            stdout=subprocess.DEVNULL))
        store = ChunkStore(LocalTarget(root / "store"), Codec())
        info = InstanceInfo("bench", 101, "vm", "tiny", {})
        first = backup_image(image, store, info)
        with image.open("r+b") as f:
            f.seek(size // 3)
            f.write(os.urandom(size // 100))
        second = backup_image(image, store, info, previous=first)
        full_rate = first.stats.read_bytes / MiB / first.stats.seconds
        incr_rate = second.stats.read_bytes / MiB / second.stats.seconds
        print(f"image {args.size_mib} MiB, {first.stats.read_bytes / MiB:.0f} MiB data")
        print(f"{'':32}{'seconds':>9}{'MiB/s':>9}{'ratio':>8}")
        print(f"{'zstd -3 -T1 | sha256sum':32}{raw:9.2f}{size / MiB / raw:9.0f}{1:8.2f}")
        print(f"{'corral full backup':32}{first.stats.seconds:9.2f}{full_rate:9.0f}"
              f"{raw / first.stats.seconds:8.2f}")
        print(f"{'corral incremental (1 % change)':32}{second.stats.seconds:9.2f}"
              f"{incr_rate:9.0f}{raw / second.stats.seconds:8.2f}")
        print(f"incremental: {second.stats.new_bytes / MiB:.1f} MiB new of "
              f"{size / MiB:.0f} MiB disk ({100 * second.stats.new_bytes / size:.2f} %), "
              f"change was {size / 100 / MiB:.1f} MiB; stored "
              f"{second.stats.stored_bytes / MiB:.1f} MiB")
        for gib in (1, 8):
            disk = root / f"disk{gib}.img"
            make_image(disk, gib << 30, 64 * MiB)
            clone_path = root / f"snap{gib}.img"
            os.sync()
            start = time.perf_counter()
            method = clone(disk, clone_path)
            took = time.perf_counter() - start
            print(f"snapshot of a {gib} GiB disk (64 MiB data): {took * 1000:.0f} ms ({method})")
            disk.unlink()
            clone_path.unlink()


if __name__ == "__main__":
    main()
