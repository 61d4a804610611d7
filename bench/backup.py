"""Backup engine against the strongest simple pipeline doing the same work on the same image.

* full: Corral's ``backup_image`` into a fresh chunk store (skips holes, hashes and
  compresses 4 MiB chunks on every core, writes them) — against ``zstd -3 -T0`` (every core,
  Corral's level) fed the same non-hole data (the image's data extents, SEEK_DATA/SEEK_HOLE,
  sent into its pipe with sendfile) and writing its output to a file. Extra row, labelled:
  the old raw side, ``zstd -3 -T1 | sha256sum`` over the whole image, holes included.
* incremental after a ~1 % change: Corral with no dirty bitmap (a container: every chunk is
  read and hashed, only changed ones stored) and with one (a VM: QEMU's bitmap names the
  changed chunks; the engine reads only those) — against reading only the changed chunks
  and ``zstd -3 -T0`` of them to a file. For a VM both sides would first take the same
  ``blockdev-backup sync=bitmap`` out of QEMU; that step is the same command on both sides,
  so it is left out of both here (the engine runs on an image file).
* snapshot: ``clone`` of 1 GiB / 8 GiB disks with 64 MiB data against
  ``cp --reflink=auto --sparse=always``.

Each comparison runs a warm-up pair (discarded), then ``--runs`` pairs in alternating order;
the image is in the page cache for both sides (bench/common.py).

    .venv/bin/python bench/backup.py [--runs 7] [--size-mib 512]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Table, accelerator, conditions, paired_rounds

from corral.backup.crypto import ZSTD_LEVEL, Codec
from corral.backup.engine import backup_image
from corral.backup.manifest import InstanceInfo, Manifest
from corral.backup.store import ChunkStore
from corral.backup.targets import LocalTarget
from corral.domain.disks import CHUNK_SIZE
from corral.drivers.snapshots import clone

MiB = 1 << 20
INFO = InstanceInfo("bench", 101, "vm", "tiny", {})


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


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def data_extents(path: Path) -> Iterator[tuple[int, int]]:
    """(offset, length) of every data extent: what ``cp --sparse`` or Corral would read."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                return
            end = os.lseek(fd, start, os.SEEK_HOLE)
            yield start, end - start
            offset = end
    finally:
        os.close(fd)


def zstd_ranges(path: Path, ranges: list[tuple[int, int]], out: Path) -> None:
    """``zstd -3 -T0 -o out`` fed only ``ranges`` of ``path`` (sendfile into its pipe)."""
    proc = subprocess.Popen(["zstd", f"-{ZSTD_LEVEL}", "-T0", "-q", "-f", "-o", str(out)],
                            stdin=subprocess.PIPE)
    assert proc.stdin is not None
    src = os.open(path, os.O_RDONLY)
    try:
        pipe = proc.stdin.fileno()
        for offset, length in ranges:
            while length > 0:
                sent = os.sendfile(pipe, src, offset, min(length, 1 << 30))
                offset += sent
                length -= sent
    finally:
        os.close(src)
        proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("zstd failed")


class Bench:
    def __init__(self, root: Path, size: int) -> None:
        self.root = root
        self.size = size
        self.image = root / "root.img"
        make_image(self.image, size, size * 3 // 4)
        subprocess.run(["cat", str(self.image)], stdout=subprocess.DEVNULL, check=True)
        self.out = root / "raw.zst"
        self.rng = random.Random(2)
        self.changed: set[int] = set()
        self.chains: dict[str, tuple[ChunkStore, Manifest]] = {}

    # -- full ---------------------------------------------------------------------------
    def corral_full(self) -> dict[str, float]:
        where = self.root / "full-store"
        store = ChunkStore(LocalTarget(where), Codec())
        took = timed(lambda: backup_image(self.image, store, INFO))
        shutil.rmtree(where)
        return {"full": took}

    def raw_full(self) -> dict[str, float]:
        t0 = timed(lambda: zstd_ranges(self.image, list(data_extents(self.image)), self.out))
        self.out.unlink()
        t1 = timed(lambda: subprocess.run(
            f"zstd -{ZSTD_LEVEL} -T1 -q -c {self.image} | sha256sum", shell=True, check=True,
            stdout=subprocess.DEVNULL))
        return {"full": t0, "t1": t1}

    # -- incremental --------------------------------------------------------------------
    def start_chains(self) -> None:
        """One chain per Corral variant (a shared store would hand the second its chunks)."""
        for name in ("hash", "bitmap"):
            store = ChunkStore(LocalTarget(self.root / f"store-{name}"), Codec())
            self.chains[name] = (store, backup_image(self.image, store, INFO))

    def change(self) -> None:
        """~1 % of the image rewritten at a new place (untimed, before both sides)."""
        length = self.size // 100
        offset = self.rng.randrange(0, self.size * 3 // 4 - length) // 4096 * 4096
        with self.image.open("r+b") as f:
            f.seek(offset)
            f.write(os.urandom(length))
        first, last = offset // CHUNK_SIZE, (offset + length - 1) // CHUNK_SIZE
        self.changed = set(range(first, last + 1))

    def corral_incremental(self) -> dict[str, float]:
        got = {}
        for name in ("hash", "bitmap"):
            store, previous = self.chains[name]
            changed = self.changed if name == "bitmap" else None
            started = time.perf_counter()
            made = backup_image(self.image, store, INFO, previous=previous, changed=changed)
            got[name] = time.perf_counter() - started
            self.chains[name] = (store, made)
        return got

    def raw_incremental(self) -> dict[str, float]:
        ranges = [(i * CHUNK_SIZE, CHUNK_SIZE) for i in sorted(self.changed)]
        took = timed(lambda: zstd_ranges(self.image, ranges, self.out))
        self.out.unlink()
        return {"changed": took}

    # -- snapshot -----------------------------------------------------------------------
    def snapshot_pair(self, gib: int) -> tuple[Callable[[], dict[str, float]],
                                                 Callable[[], dict[str, float]]]:
        disk = self.root / f"disk{gib}.img"
        if not disk.exists():
            make_image(disk, gib << 30, 64 * MiB)
        copy = self.root / f"snap{gib}.img"

        def corral() -> dict[str, float]:
            os.sync()
            took = timed(lambda: clone(disk, copy))
            copy.unlink()
            return {"snap": took}

        def raw() -> dict[str, float]:
            os.sync()
            took = timed(lambda: subprocess.run(
                ["cp", "--reflink=auto", "--sparse=always", str(disk), str(copy)], check=True))
            copy.unlink()
            return {"snap": took}

        return corral, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--size-mib", type=int, default=512)
    args = parser.parse_args()
    size = args.size_mib * MiB
    with tempfile.TemporaryDirectory(prefix="corral-bench-", dir="/var/tmp") as tmp:
        bench = Bench(Path(tmp), size)
        data = sum(length for _o, length in data_extents(bench.image))
        table = Table(f"backup of a {args.size_mib} MiB image with {data // MiB} MiB of data "
                      "(s; ratio = Corral / raw, < 1: Corral faster)", unit="s", scale=1.0)
        full = paired_rounds(args.runs, bench.corral_full, bench.raw_full, label="full ")
        table.add(f"full vs zstd -{ZSTD_LEVEL} -T0 of the data extents > file",
                  full.corral["full"], full.raw["full"])
        table.add(f"  extra (old raw side): zstd -{ZSTD_LEVEL} -T1 to sha256sum, whole image",
                  full.corral["full"], full.raw["t1"])
        bench.start_chains()
        incr = paired_rounds(args.runs, bench.corral_incremental, bench.raw_incremental,
                             label="incremental ", before=bench.change)
        table.add("incremental, no bitmap (CT: all read, hashed) vs changed chunks to zstd -T0",
                  incr.corral["hash"], incr.raw["changed"])
        table.add("incremental, dirty bitmap (VM) vs changed chunks to zstd -T0",
                  incr.corral["bitmap"], incr.raw["changed"])
        snaps = Table("snapshot clone, 64 MiB of data, /var/tmp (ms)")
        for gib in (1, 8):
            corral, raw = bench.snapshot_pair(gib)
            s = paired_rounds(args.runs, corral, raw, label=f"snapshot {gib} GiB ")
            snaps.add(f"{gib} GiB disk: clone vs cp --reflink=auto --sparse=always",
                      s.corral["snap"], s.raw["snap"])
        change = len(bench.changed) * CHUNK_SIZE
        print()
        print(conditions(args.runs, accelerator(), f"{os.cpu_count()} backup workers, "
                         f"local target on /var/tmp, ~1 % change = {size // 100 / MiB:.1f} MiB "
                         f"spanning {change // MiB} MiB of chunks"))
        print(table.render())
        print(snaps.render())


if __name__ == "__main__":
    main()
