"""Create-from-template and clone: Corral's storage path against a raw copy of the same bytes.

* create: the template's root disk cloned from its cached base image and grown to the
  requested size (what ``corral create`` does before the driver writes its configuration),
  on a btrfs pool (loop-backed file: reflink) and on a ``dir`` pool on the host filesystem
  (no reflink here: sparse copy) — against ``cp --reflink=never --sparse=always`` of the
  same image and against building the disk from the archive (mkfs.ext4 -d, the old path);
  plus the drivers' own create (LXC config / VM config) on the prepared disk;
* clone: ``clone_file`` of 1 GiB and 8 GiB disks holding data, against the raw copy.

    .venv/bin/python bench/storage.py [--data-mib 256]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from corral.domain.instance import InstanceSpec, Kind
from corral.domain.pools import PoolConfig
from corral.domain.resources import Resources
from corral.drivers.lxc.driver import LxcDriver
from corral.drivers.qemu.driver import QemuDriver
from corral.services.storage import StorageService
from corral.state.database import Database
from corral.state.storagestore import StorageStore
from corral.storage.images import build_root_disk
from corral.storage.pools import clone_file, open_pool
from corral.templates.builders.tiny import build_tiny

MiB = 1 << 20
GiB = 1 << 30


def _quiet(fraction: float, phase: str) -> None:
    del fraction, phase


def timed(fn: Callable[..., object], *args: object) -> float:
    os.sync()
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def raw_copy(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "--reflink=never", "--sparse=always", str(src), str(dst)],
                   check=True)


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


def row(name: str, corral: float, raw: float) -> str:
    return f"{name:<44} {corral * 1000:>10.1f} {raw * 1000:>10.1f} {raw / corral:>8.1f}x"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-mib", type=int, default=256,
                        help="data written into each clone-test disk")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="corral-bench-storage-"))
    root.chmod(0o711)
    btrfs = open_pool(PoolConfig("bench", "btrfs", root / "btrfs",
                                 source=root / "bench.btrfs", size=24 * GiB))
    plain = open_pool(PoolConfig("plain", "dir", root / "dir"))
    try:
        template = build_tiny(root / "tpl")
        btrfs.create()
        plain.create()
        store = StorageStore(Database.open(root / "bench.db"))
        store.insert_pool(btrfs.config, default=True)
        store.insert_pool(plain.config)
        svc = StorageService(store, root, "real")
        lines = [f"{'operation':<44} {'corral ms':>10} {'raw ms':>10} {'ratio':>9}"]
        for pool in (btrfs, plain):
            base_time = timed(svc.base_image, pool, template)
            lines.append(f"{pool.config.driver + ': base image, built once (mkfs -d)':<44} "
                         f"{base_time * 1000:>10.1f}")
            for n, (kind, size) in enumerate(((Kind.CT, GiB), (Kind.VM, GiB),
                                              (Kind.CT, 8 * GiB))):
                ident = 1000 + n + (0 if pool is btrfs else 100)
                spec = InstanceSpec(ident, f"b{ident}", kind, "tiny",
                                    Resources(memory=160 * MiB, disk=size),
                                    root / "inst" / str(ident))
                spec.directory.mkdir(parents=True)
                t_prepare = timed(svc.prepare, spec, template, _quiet, pool.name)
                made = svc.attach(spec)
                driver = LxcDriver(root / "lxc") if kind is Kind.CT else QemuDriver(accel="tcg")
                t_driver = timed(driver.create, made, template, _quiet)
                raw_dst = root / f"raw-{ident}.img"
                t_raw = timed(raw_copy, made.disk_path, raw_dst)
                mkfs_dst = root / f"mkfs-{ident}.img"
                t_mkfs = timed(build_root_disk, template.rootfs, mkfs_dst, size)
                label = f"{pool.config.driver}: create {kind.value} {size // GiB} GiB"
                lines.append(row(label + " vs cp", t_prepare + t_driver, t_raw))
                lines.append(row(label + " vs mkfs -d", t_prepare + t_driver, t_mkfs))
                lines.append(f"{'  of which driver create':<44} {t_driver * 1000:>10.1f}")
                driver.delete(made)
                svc.release(made)
                raw_dst.unlink()
                mkfs_dst.unlink()
        for pool in (btrfs, plain):
            for size in (GiB, 8 * GiB):
                src = pool.path / f"src-{size // GiB}.img"
                fill(src, size, args.data_mib * MiB)
                dst = pool.path / f"clone-{size // GiB}.img"
                raw = pool.path / f"raw-{size // GiB}.img"
                t_clone = timed(clone_file, src, dst)
                t_raw = timed(raw_copy, src, raw)
                lines.append(row(f"{pool.config.driver}: clone {size // GiB} GiB "
                                 f"({args.data_mib} MiB data)", t_clone, t_raw))
                for p in (src, dst, raw):
                    p.unlink()
        print("\n".join(lines))
    finally:
        btrfs.deactivate()
        shutil.rmtree(root / "lxc", ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
