"""Create-from-template and clone: Corral's storage path against what a person would type for
the same result on the same pool.

* create: the template's root disk cloned from its cached base image and grown to the
  requested size, plus the driver's own create (LXC or VM config) — against
  ``cp --reflink=auto --sparse=always`` of the same base image, ``truncate -s`` and
  ``resize2fs -f`` (the same disk, without the config). ``cp --reflink=auto`` reflinks where
  the pool can (btrfs) and copies sparsely where it cannot (a ``dir`` pool on the host's ext4),
  as Corral's ``clone_file`` does. Extra rows, labelled: the forced copy
  (``cp --reflink=never``) and building the disk from the archive (``mkfs.ext4 -d``, the old
  path) — what a person without reflinks or without a base image would pay.
* clone: ``clone_file`` of 1 GiB and 8 GiB disks holding data, against
  ``cp --reflink=auto --sparse=always`` (and the forced copy as an extra row).

Each operation runs a warm-up pair (discarded), then ``--runs`` pairs in alternating order
(bench/common.py). Run as root:

    .venv/bin/python bench/storage.py [--runs 10] [--data-mib 256]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Samples, Table, accelerator, conditions, paired_rounds

from corral.domain.instance import InstanceSpec, Kind
from corral.domain.pools import PoolConfig
from corral.domain.resources import Resources
from corral.drivers.lxc.driver import LxcDriver
from corral.drivers.qemu.driver import QemuDriver
from corral.services.storage import StorageService
from corral.state.database import Database
from corral.state.storagestore import StorageStore
from corral.storage.images import build_root_disk
from corral.storage.pools import Pool, clone_file, open_pool
from corral.templates.builders.tiny import build_tiny
from corral.templates.image import TemplateImage

MiB = 1 << 20
GiB = 1 << 30


def _quiet(fraction: float, phase: str) -> None:
    del fraction, phase


def timed(fn: Callable[[], object]) -> float:
    os.sync()  # neither side pays for the other's (or the last round's) dirty pages
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def cp(src: Path, dst: Path, reflink: str) -> None:
    sh("cp", f"--reflink={reflink}", "--sparse=always", str(src), str(dst))


def raw_create(base: Path, dst: Path, size: int, reflink: str) -> None:
    """The root disk by hand: copy (or reflink) the base image, grow the file, grow ext4."""
    cp(base, dst, reflink)
    sh("truncate", "-s", str(size), str(dst))
    sh("resize2fs", "-f", str(dst))


def fill(path: Path, size: int, data: int) -> None:
    with path.open("wb") as f:
        f.truncate(size)
        step = max(size // max(data // (4 * MiB), 1), 4 * MiB)
        offset = 0
        written = 0
        while written < data and offset < size:
            f.seek(offset)
            f.write(os.urandom(4 * MiB))
            written += 4 * MiB
            offset += step


class CreateBench:
    """Corral's create (storage + driver) and the raw commands, for one pool, kind and size."""

    ids = itertools.count(1000)

    def __init__(self, root: Path, svc: StorageService, pool: Pool, template: TemplateImage,
                 kind: Kind, size: int) -> None:
        self.root, self.svc, self.pool, self.template = root, svc, pool, template
        self.kind, self.size = kind, size
        self.base = svc.base_image(pool, template)

    def corral(self) -> dict[str, float]:
        ident = next(self.ids)
        spec = InstanceSpec(ident, f"b{ident}", self.kind, "tiny",
                            Resources(memory=160 * MiB, disk=self.size),
                            self.root / "inst" / str(ident))
        spec.directory.mkdir(parents=True)
        t_prepare = timed(lambda: self.svc.prepare(spec, self.template, _quiet, self.pool.name))
        made = self.svc.attach(spec)
        driver = (LxcDriver(self.root / "lxc") if self.kind is Kind.CT
                  else QemuDriver(accel="tcg"))
        t_driver = timed(lambda: driver.create(made, self.template, _quiet))
        driver.delete(made)
        self.svc.release(made)
        return {"create": t_prepare + t_driver, "driver": t_driver}

    def raw(self) -> dict[str, float]:
        dst = self.pool.path / "raw.img"
        got = {}
        for name, make in (
            ("auto", lambda: raw_create(self.base, dst, self.size, "auto")),
            ("never", lambda: raw_create(self.base, dst, self.size, "never")),
            ("mkfs", lambda: build_root_disk(self.template.rootfs, dst, self.size)),
        ):
            got[name] = timed(make)
            dst.unlink()
        return got


class CloneBench:
    """``clone_file`` and ``cp`` of one data-holding disk on one pool."""

    def __init__(self, pool: Pool, size: int, data: int) -> None:
        self.src = pool.path / f"src-{size // GiB}.img"
        self.dst = pool.path / f"copy-{size // GiB}.img"
        fill(self.src, size, data)

    def corral(self) -> dict[str, float]:
        took = timed(lambda: clone_file(self.src, self.dst))
        self.dst.unlink()
        return {"clone": took}

    def raw(self) -> dict[str, float]:
        got = {}
        for reflink in ("auto", "never"):
            got[reflink] = timed(functools.partial(cp, self.src, self.dst, reflink))
            self.dst.unlink()
        return got

    def close(self) -> None:
        self.src.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--data-mib", type=int, default=256,
                        help="data written into each clone-test disk")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    root = Path(tempfile.mkdtemp(prefix="corral-bench-storage-"))
    root.chmod(0o711)
    btrfs = open_pool(PoolConfig("bench", "btrfs", root / "btrfs",
                                 source=root / "bench.btrfs", size=24 * GiB))
    plain = open_pool(PoolConfig("plain", "dir", root / "dir"))
    table = Table("create and clone (ms; ratio = Corral / raw, < 1: Corral faster)")
    try:
        template = build_tiny(root / "tpl")
        btrfs.create()
        plain.create()
        store = StorageStore(Database.open(root / "bench.db"))
        store.insert_pool(btrfs.config, default=True)
        store.insert_pool(plain.config)
        svc = StorageService(store, root, "real")
        for pool in (btrfs, plain):
            drv = pool.config.driver
            for kind, size in ((Kind.CT, GiB), (Kind.VM, GiB), (Kind.CT, 8 * GiB)):
                bench = CreateBench(root, svc, pool, template, kind, size)
                label = f"{drv}: create {kind.value} {size // GiB} GiB"
                s = paired_rounds(args.runs, bench.corral, bench.raw, label=label + " ")
                table.add(f"{label} vs cp --reflink=auto + truncate + resize2fs",
                          s.corral["create"], s.raw["auto"])
                table.add("  extra: vs the same with cp --reflink=never",
                          s.corral["create"], s.raw["never"])
                table.add("  extra: vs mkfs.ext4 -d from the archive",
                          s.corral["create"], s.raw["mkfs"])
                table.add("  of which Corral's driver create", s.corral["driver"], None)
        for pool in (btrfs, plain):
            for size in (GiB, 8 * GiB):
                clone = CloneBench(pool, size, args.data_mib * MiB)
                label = (f"{pool.config.driver}: clone {size // GiB} GiB "
                         f"({args.data_mib} MiB data)")
                try:
                    s = paired_rounds(args.runs, clone.corral, clone.raw, Samples(),
                                      label=label + " ")
                finally:
                    clone.close()
                table.add(f"{label} vs cp --reflink=auto", s.corral["clone"], s.raw["auto"])
                table.add("  extra: vs cp --reflink=never", s.corral["clone"], s.raw["never"])
        print()
        print(conditions(args.runs, accelerator(), "btrfs pool on a loop file; dir pool on "
                         f"{Path(root).resolve()} ({_fstype(root)})"))
        print(table.render())
    finally:
        btrfs.deactivate()
        shutil.rmtree(root / "lxc", ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


def _fstype(path: Path) -> str:
    found = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True,
                           text=True, check=False)
    return found.stdout.strip() or "?"


if __name__ == "__main__":
    main()
