"""A container that a checkpoint just stopped: its disk images made whole and unchanging on
the host without waiting for LXC's teardown (the post-stop hook's unmount, ~0.1-0.2 s after
``lxc-checkpoint -s`` returned), so a migration reads its final disk delta meanwhile.

Once no task of the container is left, each of its file systems (the root's and the data
disks' loop mounts on the host) is remounted read-only: the kernel writes out everything
dirty, flushes and empties ext4's journal and marks the superblock clean, and it refuses
while a file is still open for writing or an unlinked file is still open (EBUSY). After
that nothing writes to the image again: the hook's later unmount of a read-only ext4 writes
neither its superblock nor its (empty) journal. The image file, read through the host's
page cache, is then the file system as the container left it; nothing on the target has
to replay a journal. Where that cannot be done (the remount refused past a short wait, or
the hook was first), this waits for the release as before (``checkpoint.released``).
So that the hook is not first, a stopping dump for a move leaves a flag in the run
directory that the post-stop hooks wait for (``hold_unmount``, at most ~3 s: a corrald
gone meanwhile does not keep the image mounted); ``quiesce`` removes it.
"""

from __future__ import annotations

import errno
import logging
import time
from pathlib import Path

from corral.domain.errors import HostFailure
from corral.domain.instance import InstanceSpec
from corral.drivers.lxc.checkpoint import UNMOUNT_WAIT, released
from corral.drivers.lxc.config import QUIESCING, cgroup_dirs
from corral.drivers.lxc.disks import data_mount
from corral.drivers.lxc.driver import LxcDriver, lxc_name
from corral.drivers.lxc.state import StateReader
from corral.drivers.migration import PhaseClock
from corral.host.loopmount import loop_devices
from corral.host.mounts import remount_readonly

log = logging.getLogger("corral.lxc")
BUSY_WAIT = 1.0
"""How long a remount refused with EBUSY (an exiting task's last file still closing) is
tried again before falling back to waiting for the release."""


def quiesce(driver: LxcDriver, spec: InstanceSpec) -> tuple[str, dict[str, float]]:
    """After a stopping dump of ``spec``: its images consistent and left alone on the host.
    How it was done: "read-only" (remounted) or "released" (waited for LXC's teardown), and
    its phases (ms)."""
    try:
        return _quiesce(driver, spec)
    finally:
        let_unmount(spec)


def hold_unmount(spec: InstanceSpec) -> None:
    """Before a stopping dump: the post-stop hooks wait for ``quiesce`` (config.QUIESCING)."""
    (spec.run_dir / QUIESCING).touch()


def let_unmount(spec: InstanceSpec) -> None:
    (spec.run_dir / QUIESCING).unlink(missing_ok=True)


def _quiesce(driver: LxcDriver, spec: InstanceSpec) -> tuple[str, dict[str, float]]:
    clock = PhaseClock()
    gone = _tasks_gone(driver, spec)
    clock.mark("tasks gone")
    if not gone:
        released(spec)
        clock.mark("root released")
        return "released", clock.phases
    mounts = [("root", spec.run_dir / "rootfs", spec.disk_path),
              *((d.name, data_mount(spec, d), d.path) for d in spec.data_disks)]
    how = "read-only"
    for name, mountpoint, image in mounts:
        if _readonly(mountpoint):
            clock.mark(f"{name} read-only")
        else:
            how = "released"
            _wait_detached(spec, mountpoint, image)
            clock.mark(f"{name} released")
    return how, clock.phases


def _tasks_gone(driver: LxcDriver, spec: InstanceSpec) -> bool:
    """Wait until the container's cgroup holds no process (a task leaves it only after its
    files and its mount namespace were let go); False if that did not come in time."""
    reader = StateReader(driver._cgroups())
    rel = cgroup_dirs(lxc_name(spec))["container"]
    deadline = time.monotonic() + UNMOUNT_WAIT
    while reader.members(rel):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def _readonly(mountpoint: Path) -> bool:
    """Remount ``mountpoint`` read-only, trying again while the kernel finds it busy; False
    when it could not be (not mounted any more, or still busy after ``BUSY_WAIT``)."""
    deadline = time.monotonic() + BUSY_WAIT
    while True:
        try:
            return remount_readonly(mountpoint)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                log.warning("cannot make %s read-only (%s): waiting for its release",
                            mountpoint, exc.strerror)
                return False
        time.sleep(0.002)


def _wait_detached(spec: InstanceSpec, mountpoint: Path, image: Path) -> None:
    """The slow way: the root as ``checkpoint.released`` waits for it, a data disk until
    its loop device is gone (its hook's unmount and the kernel's teardown done)."""
    if mountpoint == spec.run_dir / "rootfs":
        released(spec)
        return
    deadline = time.monotonic() + UNMOUNT_WAIT
    while loop_devices(image):
        if time.monotonic() > deadline:
            raise HostFailure(f"the data disk {image.name} of container '{spec.name}' is "
                              f"still in use {UNMOUNT_WAIT:g} s after its dump stopped it")
        time.sleep(0.005)
