"""CRIU checkpoint and restore of a container, through ``lxc-checkpoint``.

LXC drives CRIU (it passes ``--tcp-established``, the cgroup and mount maps); what it does not
know is that Corral's containers run from a loop mount the driver makes before ``lxc-start``
and a post-stop hook removes. So a restore mounts the root and data disks first (as ``start``
does) and unmounts them again if CRIU fails; a dump that stops the container leaves them to
that hook. Used by memory snapshots (and meant for checkpoint/restore migration).
"""

from __future__ import annotations

from pathlib import Path

from corral.domain.errors import HostFailure
from corral.domain.instance import InstanceSpec
from corral.drivers.base import RuntimeState
from corral.drivers.lxc.disks import mount_data_disks, unmount_data_disks
from corral.drivers.lxc.driver import LxcDriver
from corral.host.mounts import mount_image, unmount
from corral.host.run import run

TIMEOUT = 300


def _failure(verb: str, spec: InstanceSpec, directory: Path, said: bytes) -> HostFailure:
    """lxc-checkpoint's own words, plus CRIU's errors from its log in ``directory``."""
    log = directory / f"{verb}.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    errors = [line for line in lines if "Error" in line][-5:]
    text = "\n".join([said.decode(errors="replace").strip(), *errors]).strip()
    return HostFailure(f"CRIU {verb} of container '{spec.name}' failed: {text}")


def dump(driver: LxcDriver, spec: InstanceSpec, directory: Path, *, stop: bool) -> None:
    """Checkpoint the running ``spec`` into ``directory``; ``stop``: it stops once dumped,
    else it runs on."""
    directory.mkdir(parents=True, exist_ok=True)
    args = [*driver._args("lxc-checkpoint", spec), "-D", str(directory)]
    proc = run([*args, "-s" if stop else "-v"], check=False, timeout=TIMEOUT)
    if proc.returncode != 0:
        raise _failure("dump", spec, directory, proc.stderr or proc.stdout)


def restore(driver: LxcDriver, spec: InstanceSpec, directory: Path) -> None:
    """Resume the stopped ``spec`` from the checkpoint in ``directory``."""
    if driver.status(spec).state is not RuntimeState.STOPPED:
        raise HostFailure(f"container '{spec.name}' must be stopped to restore a checkpoint")
    mount_image(spec.disk_path, spec.run_dir / "rootfs")
    mount_data_disks(spec)
    proc = run([*driver._args("lxc-checkpoint", spec), "-r", "-D", str(directory)],
               check=False, timeout=TIMEOUT)
    if proc.returncode != 0:
        if driver.status(spec).state is RuntimeState.STOPPED:
            unmount(spec.run_dir / "rootfs")
            unmount_data_disks(spec)
        raise _failure("restore", spec, directory, proc.stderr or proc.stdout)
