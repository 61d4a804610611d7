"""host.loopmount: an ext4 image mounted through LOOP_CONFIGURE and mount(2) on real loop
devices; the device goes away with the mount, and a failed mount leaves none."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from corral.domain.errors import HostFailure
from corral.host.loopmount import (
    ATTEMPTS,
    LOOP_CONTROL,
    LoopConfig,
    LoopInfo64,
    loop_devices,
    mount_loop,
)
from corral.host.mounts import mount_image
from corral.storage.pools.copy import clone_file

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="loop devices and mount(2) need root"),
    pytest.mark.skipif(not LOOP_CONTROL.exists(), reason=f"{LOOP_CONTROL} is missing"),
    pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="mkfs.ext4 is missing"),
]


def _image(path: Path, size_mb: int = 8) -> Path:
    with path.open("wb") as file:
        file.truncate(size_mb << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(path)], check=True)
    return path


def _devices_of(image: Path, wait: float = 0.0) -> list[str]:
    """MAJ:MIN of the loop devices bound to ``image``, waiting up to ``wait`` s for none
    (udev may hold a released device open for a moment)."""
    deadline = time.monotonic() + wait
    while True:
        found = loop_devices(image)
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


def _umount(target: Path) -> None:
    subprocess.run(["umount", str(target)], check=True)


def test_structures_match_linux_loop_h() -> None:
    assert ctypes.sizeof(LoopInfo64) == 232 and ctypes.sizeof(LoopConfig) == 304


def test_mounted_nodev_with_autoclear_and_released_on_umount(tmp_path: Path) -> None:
    image = _image(tmp_path / "disk.img")
    target = tmp_path / "mnt"
    target.mkdir()
    mount_loop(image, target)
    try:
        devices = _devices_of(image)
        assert len(devices) == 1
        autoclear = Path("/sys/dev/block") / devices[0] / "loop" / "autoclear"
        assert autoclear.read_text().strip() == "1"
        options = next(line.split()[3] for line in Path("/proc/mounts").read_text().splitlines()
                       if line.split()[1] == str(target))
        assert "nodev" in options.split(",")
        (target / "kept").write_text("data")
    finally:
        _umount(target)
    assert _devices_of(image, wait=5.0) == []
    mount_image(image, target)  # the same image again: what was written is there
    try:
        assert (target / "kept").read_text() == "data"
        mount_image(image, target)  # already mounted: nothing more
        assert len(_devices_of(image)) == 1
    finally:
        _umount(target)
    assert _devices_of(image, wait=5.0) == []


def _direct_io_refused(directory: Path) -> str | None:
    """Why files in ``directory`` cannot be opened with O_DIRECT, or None."""
    probe = directory / "odirect-probe"
    probe.write_bytes(b"")
    try:
        os.close(os.open(probe, os.O_RDONLY | os.O_DIRECT))
    except OSError as exc:
        return f"{directory}'s file system refuses O_DIRECT: {exc.strerror}"
    finally:
        probe.unlink()
    return None


def test_the_device_does_direct_io_where_the_image_file_can(tmp_path: Path) -> None:
    """Buffered, the loop worker copied every block between the image file's page cache and
    the file system's (CPU per container start, memory cached twice)."""
    refused = _direct_io_refused(tmp_path)
    if refused:
        pytest.skip(refused)
    image = _image(tmp_path / "disk.img")
    target = tmp_path / "mnt"
    target.mkdir()
    mount_loop(image, target)
    try:
        (target / "written").write_bytes(b"x" * 100_000)
        os.sync()
        [device] = _devices_of(image)
        assert (Path("/sys/dev/block") / device / "loop" / "dio").read_text().strip() == "1"
    finally:
        _umount(target)
    mount_loop(image, target)
    try:
        assert (target / "written").read_bytes() == b"x" * 100_000
    finally:
        _umount(target)


def test_a_file_without_a_filesystem_is_refused_and_leaves_no_device(tmp_path: Path) -> None:
    image = tmp_path / "zeros.img"
    with image.open("wb") as file:
        file.truncate(4 << 20)
    target = tmp_path / "mnt"
    target.mkdir()
    with pytest.raises(HostFailure, match=r"cannot mount .*zeros\.img"):
        mount_loop(image, target)
    assert _devices_of(image, wait=5.0) == []
    assert not os.path.ismount(target)


def test_a_missing_image_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "mnt"
    target.mkdir()
    with pytest.raises(HostFailure, match="cannot open disk image"):
        mount_loop(tmp_path / "absent.img", target)


def test_concurrent_mounts_get_distinct_devices(tmp_path: Path) -> None:
    """More threads asking loop-control at once than a thread has attempts (a bulk create
    with --parallel 32): each gets its own device (this process's threads take turns for a
    free one; a device another process took first is asked for again)."""
    count = ATTEMPTS + 8
    first = _image(tmp_path / "d0.img")
    images = [first] + [tmp_path / f"d{i}.img" for i in range(1, count)]
    for image in images[1:]:
        clone_file(first, image)
    targets = [tmp_path / f"m{i}" for i in range(count)]
    for target in targets:
        target.mkdir()
    together = threading.Barrier(count)

    def mount(image: Path, target: Path) -> None:
        together.wait(30)
        mount_loop(image, target)

    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(mount, image, target)
                   for image, target in zip(images, targets, strict=True)]
    errors = [future.exception() for future in futures]
    try:
        assert errors == [None] * count
        devices = _backed_by(tmp_path)  # one pass over /sys/block (a host has ~1000)
        assert sorted(devices.values()) == sorted(str(i) for i in images)
    finally:
        for target in targets:
            if os.path.ismount(target):
                _umount(target)
    deadline = time.monotonic() + 5
    while _backed_by(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _backed_by(tmp_path) == {}


def _backed_by(directory: Path) -> dict[str, str]:
    """Loop device -> its backing file, for the files under ``directory``."""
    found = {}
    for loop in Path("/sys/block").glob("loop*"):
        try:
            backing = (loop / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(f"{directory}/"):
            found[loop.name] = backing
    return found


def test_a_read_only_remount_leaves_a_whole_image_that_the_unmount_does_not_change(
        tmp_path: Path) -> None:
    """host.mounts.remount_readonly (a CT move's final delta, drivers/lxc/quiesce.py):
    refused while an unlinked file is open; once done, the image holds every write, is
    clean (e2fsck: no journal to replay), and its unmount changes no byte of it."""
    import hashlib

    from corral.host.mounts import remount_readonly, unmount

    image, target = _image(tmp_path / "ro.img"), tmp_path / "mnt"
    mount_image(image, target)
    try:
        payload = os.urandom(300_000)
        (target / "written").write_bytes(payload)  # not synced: in the page cache only
        fd = os.open(target / "unlinked", os.O_CREAT | os.O_RDWR)
        os.unlink(target / "unlinked")
        with pytest.raises(OSError) as busy:
            remount_readonly(target)
        assert busy.value.errno == 16  # EBUSY
        os.close(fd)
        assert remount_readonly(target)
        assert os.statvfs(target).f_flag & os.ST_RDONLY and os.statvfs(target).f_flag & \
            os.ST_NODEV  # the mount's own flags kept
        read_only = hashlib.sha256(image.read_bytes()).digest()
        checked = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        unmount(target)
    assert hashlib.sha256(image.read_bytes()).digest() == read_only
    assert not remount_readonly(target)  # nothing mounted there any more
    mount_image(image, target)
    try:
        assert (target / "written").read_bytes() == payload
    finally:
        unmount(target)
