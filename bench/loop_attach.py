"""The restore's loop attach of a freshly received image, with and without the write-back
that ``TargetSide.receive_disk`` now queues (``host/writeback.py``).

Each round writes an image the way a migration target receives one (a 256 MiB ext4 image
copied with plain writes, as ``apply_frames`` does), waits ``--gap`` seconds (the rest of
the pre-copy and the dump), writes a 2 MiB "final delta", then binds it to a loop device
(``host/loopmount.attach``) and mounts it, timed. "corral" queues the write-back after each
write, as the target does; "raw" does not (what the target did before). Kernel 6.18 here:
``LOOP_CONFIGURE`` flushes the backing file's dirty pages first. Run as root:
``.venv/bin/python bench/loop_attach.py [--runs 5]`` (TMPDIR: where the images go).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Table, conditions, paired_rounds

from corral.host import loopmount
from corral.host.mounts import unmount
from corral.host.writeback import start_writeback

MIB = 1024**2


def _receive(source: Path, image: Path, kick: bool) -> None:
    with source.open("rb") as src, image.open("wb") as dst:
        while chunk := src.read(MIB):
            dst.write(chunk)
    if kick:
        start_writeback(image)


def _round(source: Path, work: Path, kick: bool, gap: float) -> dict[str, float]:
    image = work / f"image-{kick}.img"
    mountpoint = work / "mnt"
    mountpoint.mkdir(exist_ok=True)
    _receive(source, image, kick)
    time.sleep(gap)
    with image.open("r+b") as disk:
        disk.seek(64 * MIB)
        disk.write(os.urandom(2 * MIB))
    if kick:
        start_writeback(image)
    began = time.perf_counter()
    device, path = loopmount.attach(image)
    attached = time.perf_counter()
    try:
        if loopmount._libc.mount(path.encode(), os.fsencode(mountpoint), b"ext4",
                                 loopmount.MS_NODEV, None) != 0:
            raise RuntimeError(f"mount of {image} failed")
    finally:
        os.close(device)
    mounted = time.perf_counter()
    unmount(mountpoint)
    image.unlink()
    return {"attach": attached - began, "mount": mounted - attached, "both": mounted - began}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--gap", type=float, default=0.5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    work = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    try:
        source = work / "source.img"
        with source.open("wb") as disk:
            disk.truncate(256 * MIB)
        subprocess.run(["mkfs.ext4", "-q", str(source)], check=True)
        mountpoint = work / "mnt"
        mountpoint.mkdir()
        loopmount.mount_loop(source, mountpoint)
        for i in range(48):  # ~48 MiB of files, as a used root
            (mountpoint / f"f{i}").write_bytes(os.urandom(MIB))
        unmount(mountpoint)
        os.sync()
        samples = paired_rounds(args.runs, lambda: _round(source, work, True, args.gap),
                                lambda: _round(source, work, False, args.gap))
        print(conditions(args.runs, "n/a", f"256 MiB ext4 image, 48 MiB used, "
                         f"{args.gap} s between the copy and the 2 MiB delta"))
        table = Table("loop attach + mount of a just-received image (ms; corral = write-back "
                      "queued as received, raw = not)")
        table.add("attach + mount", samples.corral["both"], samples.raw["both"])
        table.add("  attach (LOOP_CONFIGURE)", samples.corral["attach"], samples.raw["attach"])
        table.add("  mount", samples.corral["mount"], samples.raw["mount"])
        print(table.render())
    finally:
        unmount(work / "mnt")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
