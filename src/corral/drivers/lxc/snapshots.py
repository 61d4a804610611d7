"""Snapshot hooks of the LXC driver.

Quiescing a running container: ``lxc-freeze`` (cgroup freezer) stops its processes, then
``fsfreeze`` of its root's host mount (``run/rootfs``) flushes the ext4 filesystem that lives
in the loop-mounted image, so the image file is consistent; so does an ``fsfreeze`` of every
mounted data disk (``run/disks/<name>``: the same filesystems the container has bound in);
the clones of all disks are made; then everything thaws.
Where ``fsfreeze`` is refused the host page cache is synced instead (crash-consistent, said
in the snapshot's consistency note). Snapshots with memory are a CRIU checkpoint
(``drivers.lxc.checkpoint``, the container runs on) taken while the processes are still
frozen after the clones, so disks and memory are one point in time; a revert stops the
container, puts the disks back and restores the checkpoint. Refused up front, with the
reason, where the checkpoint could not be restored here (``checkpoint.refusal``), and
refused (before the freeze, and again frozen just before the dump) while an exec's processes
run in the container: CRIU's dump would leave them out (``attached``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from corral.domain.errors import Conflict, Unsupported
from corral.domain.instance import InstanceSpec
from corral.drivers.base import RuntimeState
from corral.drivers.lxc import checkpoint
from corral.drivers.lxc.attached import attached_refusal
from corral.drivers.lxc.disks import data_mount
from corral.drivers.lxc.driver import LxcDriver
from corral.drivers.snapshots import Captured, DiskCopy, clone_all, replace_disks
from corral.host.run import run
from corral.templates.image import TemplateImage

CRIU_DIR = "criu"
log = logging.getLogger("corral.snapshots")


class LxcSnapshots:
    def __init__(self, driver: LxcDriver) -> None:
        self.driver = driver

    # Memory (CRIU) ------------------------------------------------------------------------
    def memory_refusal(self, spec: InstanceSpec) -> str | None:
        why = checkpoint.refusal(spec) or checkpoint.systemd_refusal(
            self.driver.status(spec).pid)
        return None if why is None else f"container snapshots with memory (CRIU): {why}"

    # Quiescing ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _quiesced(self, spec: InstanceSpec,
                  still_frozen: Callable[[], None] | None = None) -> Iterator[str]:
        """Processes and filesystems frozen for the body; ``still_frozen`` runs once the
        filesystems thawed, before the processes do."""
        status = self.driver.status(spec)
        if status.state not in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
            yield "stopped (consistent)"
            return
        was_frozen = status.state is RuntimeState.SUSPENDED
        if not was_frozen:
            run(self.driver._args("lxc-freeze", spec), timeout=60)
        frozen: list[Path] = []
        try:
            # On the host mounts (the same filesystems the container has bound in): never
            # a binary inside the container (it is the guest's, e.g. busybox's fsfreeze
            # without -f, and must not run as host root).
            everything = True
            mounts = [spec.run_dir / "rootfs"] + [data_mount(spec, d) for d in spec.data_disks]
            for mounted in mounts:  # a data disk queued for the next start is not mounted
                if os.path.ismount(mounted):
                    everything = _freeze(mounted, frozen) and everything
                elif mounted == mounts[0]:
                    everything = False
            what = "root and data filesystems" if spec.data_disks else "root filesystem"
            if everything:
                yield f"online: processes frozen, {what} frozen (fsfreeze)"
            else:
                os.sync()
                yield "online: processes frozen, host page cache synced (crash-consistent)"
            for mounted in reversed(frozen):
                run(["fsfreeze", "-u", str(mounted)], check=False, timeout=60)
            frozen.clear()
            if still_frozen is not None:
                still_frozen()
        finally:
            for mounted in reversed(frozen):
                run(["fsfreeze", "-u", str(mounted)], check=False, timeout=60)
            if not was_frozen:
                run(self.driver._args("lxc-unfreeze", spec), timeout=60)

    # Hooks ---------------------------------------------------------------------------------
    def take(self, spec: InstanceSpec, dest: Path, memory: bool,
             copies: Sequence[DiskCopy]) -> Captured:
        if memory:
            reason = self.memory_refusal(spec)
            if reason is not None:
                raise Unsupported(reason)
            if self.driver.status(spec).state is not RuntimeState.RUNNING:
                raise Conflict(f"{spec.name} is not running: a memory snapshot needs it running")

        def dump() -> None:  # CRIU writes files (link remaps): not while fsfreeze holds
            _refuse_attached(self.driver, spec)  # again, frozen: an exec started meanwhile
            checkpoint.dump(self.driver, spec, dest / CRIU_DIR, stop=False)

        if memory:
            _refuse_attached(self.driver, spec)  # before anything is frozen

        with self._quiesced(spec, dump if memory else None) as consistency:
            method = clone_all(copies)
        return Captured(consistency + (" + CRIU checkpoint" if memory else ""), method)

    def revert(
        self, spec: InstanceSpec, template: TemplateImage, source: Path, memory: bool,
        copies: Sequence[DiskCopy],
    ) -> None:
        if memory:
            reason = self.memory_refusal(spec)
            if reason is not None:
                raise Unsupported(reason)
        if self.driver.status(spec).state in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
            self.driver.stop(spec, force=True, timeout=0)
        replace_disks(copies)
        if memory:
            checkpoint.restore(self.driver, spec, source / CRIU_DIR)  # thawed (quiesced)

    def capture_disks(self, spec: InstanceSpec, copies: Sequence[DiskCopy],
                      since: Mapping[str, str]) -> Captured:
        del since  # no change tracking: the whole images are read, new chunks stored
        with self._quiesced(spec) as consistency:
            method = clone_all(copies)
        return Captured(consistency, method)

    def drop_tracking(self, spec: InstanceSpec, tracking: str) -> None:
        """No change tracking for a loop-mounted image: incrementals are found by chunk
        hash (the whole image is read; only new chunks are stored)."""


def _refuse_attached(driver: LxcDriver, spec: InstanceSpec) -> None:
    """An exec's processes (outside init's tree) would be missing after the revert: the
    memory snapshot is refused, naming them (``attached``)."""
    why = attached_refusal(driver, spec)
    if why is not None:
        raise Conflict(f"no memory snapshot of {spec.name}: {why}; or take a disk-only "
                       "snapshot (without --memory)")


def _freeze(mountpoint: Path, frozen: list[Path]) -> bool:
    """``fsfreeze -f`` one filesystem; remembered in ``frozen`` (for the thaw) if it worked."""
    proc = run(["fsfreeze", "-f", str(mountpoint)], check=False, timeout=60)
    if proc.returncode != 0:
        log.info("fsfreeze %s: %s (falling back to a host sync)", mountpoint,
                 (proc.stderr or proc.stdout).decode(errors="replace").strip())
        return False
    frozen.append(mountpoint)
    return True
