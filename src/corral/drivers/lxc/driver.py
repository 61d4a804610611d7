"""Containers through the ``lxc-*`` tools, in a Corral-owned lxcpath (never /var/lib/lxc).

What a container is made of, all found again from disk (so a restarted daemon re-adopts
running containers from their cgroups, see ``state``):

* ``<lxcpath>/<id>/config``   — rendered by ``config.render_config``;
* ``spec.disk_path``          — the ext4 root image, ids unshifted (the same disk a VM
  boots), loop-mounted on the host at ``run/rootfs`` while the container runs; an
  unprivileged container sees it through an idmapped mount (``idmap=container``);
* ``spec.directory/console.log`` (+ ``.1`` once rotated) and ``lxc.log``.

The LXC name is the instance id (stable across renames); the hostname is the instance name.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import stat
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from corral.domain.errors import Conflict, HostFailure, NotFound, Unsupported
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.drivers.base import (
    AppliedChange,
    Capabilities,
    ConsoleStream,
    ExecResult,
    Hooks,
    InstanceStats,
    Progress,
    RuntimeState,
    RuntimeStatus,
)
from corral.drivers.lxc import resources as ct_resources
from corral.drivers.lxc import state as ct_state
from corral.drivers.lxc.config import (
    DEFAULT_INCLUDE_DIR,
    HOOK_SHELL,
    TOOL_PATH,
    ContainerConfig,
    cgroup_dirs,
    render_config,
)
from corral.drivers.lxc.console import LxcConsole, RestoredConsole, restored_socket
from corral.drivers.lxc.disks import (
    LxcDiskHotplug,
    data_mount,
    mount_data_disks,
    unmount_data_disks,
)
from corral.drivers.lxc.nics import LxcNics
from corral.drivers.lxc.startenv import start_env
from corral.drivers.lxc.watch import Asked, StateCache
from corral.host import cgroupfs
from corral.host.cgroups import CgroupLayout, host_layout
from corral.host.idmap import IdMap, root_idmap, unprivileged_possible
from corral.host.mounts import mount_image, unmount
from corral.host.process import run_with_deadline
from corral.host.run import require_tool, run
from corral.network.nicfile import NICS_FILE, read_nics
from corral.storage.images import build_root_disk
from corral.templates.image import TemplateImage

CONSOLE_LOG = "console.log"
LXC_LOG = "lxc.log"
START_TIMEOUT = 30.0
CONSOLE_ATTACH_TIMEOUT = 5.0
# lxc-console's escape key: etoc("X") is -1, which LXC documents as "no escape sequence",
# so no byte a user types can detach the console.
_NO_ESCAPE = "X"

log = logging.getLogger("corral.lxc")


def _stale_config(text: str) -> bool:
    """Whether a container's config must be written again before it starts: data disk
    entries (the disks may have changed), or hooks from before they set their own PATH."""
    return "lxc.mount.entry" in text or (
        "lxc.hook.post-stop" in text and f"lxc.hook.post-stop = {HOOK_SHELL}" not in text)


def lxc_name(spec: InstanceSpec) -> str:
    return str(spec.id)


class LxcDriver(LxcDiskHotplug):
    """The Driver for Kind.CT. ``lxcpath`` is Corral's own (e.g. <state>/lxc)."""

    def __init__(self, lxcpath: Path, include_dir: Path = DEFAULT_INCLUDE_DIR) -> None:
        self.lxcpath = lxcpath
        self.include_dir = include_dir
        self._hooks: Hooks | None = None
        self._states: StateCache | None = None
        """Containers' states between two ``statuses`` calls (drivers/lxc/watch.py)."""

    def close(self) -> None:
        """Let go of the watches ``statuses`` holds (the daemon's end)."""
        if self._states is not None:
            self._states.close()
            self._states = None

    # -- what this host can do ------------------------------------------------------------

    @property
    def kind(self) -> Kind:
        return Kind.CT

    def capabilities(self) -> Capabilities:
        unprivileged, why_not = unprivileged_possible()
        # asked on every create: the layout read once per process (read_layout parses
        # /proc/mounts, a line per running container's root: 0.2 ms per create at 0-400
        # running, 0.7 ms at 400-800)
        layout = self._cgroups()
        notes = [f"cgroups: {layout.version.value}"]
        if why_not:
            notes.append(f"unprivileged containers unavailable: {why_not}")
        return Capabilities(kind=Kind.CT, unprivileged=unprivileged, snapshots=True,
                            nic_hotplug=True, notes=tuple(notes))

    def hooks(self) -> Hooks:
        if self._hooks is None:
            from corral.drivers.lxc.migration import LxcMigration  # they import this module
            from corral.drivers.lxc.snapshots import LxcSnapshots

            self._hooks = Hooks(snapshots=LxcSnapshots(self), nics=LxcNics(self),
                                migration=LxcMigration(self))
        return self._hooks

    # -- paths ----------------------------------------------------------------------------

    def _container_dir(self, spec: InstanceSpec) -> Path:
        return self.lxcpath / lxc_name(spec)

    def _args(self, tool: str, spec: InstanceSpec) -> list[str]:
        return [require_tool(tool, "lxc"), "-n", lxc_name(spec), "-P", str(self.lxcpath)]

    @staticmethod
    def _console_log(spec: InstanceSpec) -> Path:
        return spec.directory / CONSOLE_LOG

    # -- lifecycle ------------------------------------------------------------------------

    def _idmap_for(self, spec: InstanceSpec) -> IdMap | None:
        if spec.privileged:
            return None
        possible, why_not = unprivileged_possible()
        found = root_idmap() if possible else None
        if found is None:
            raise Unsupported(
                f"cannot create unprivileged container '{spec.name}': {why_not}; "
                "or ask for a privileged one"
            )
        if found.uid.start != found.gid.start:
            raise Unsupported(
                f"root's subordinate uid range ({found.uid.start}) and gid range "
                f"({found.gid.start}) start at different ids; Corral shifts both by one offset"
            )
        return found

    def config_for(self, spec: InstanceSpec, template: TemplateImage) -> ContainerConfig:
        return ContainerConfig(
            lxc_name=lxc_name(spec),
            hostname=spec.name,
            disk_path=spec.disk_path,
            console_log=self._console_log(spec),
            log_file=spec.directory / LXC_LOG,
            halt_signal=template.ct_halt_signal,
            resources=spec.resources,
            idmap=self._idmap_for(spec),
            cgroups=self._cgroups(),
            rootfs_mount=spec.run_dir / "rootfs",
            include_dir=self.include_dir,
            nics=tuple(read_nics(spec.directory)),
            swap_limit=cgroupfs.swap_limit_possible(self._cgroups()),
            data_mounts=tuple((data_mount(spec, d), d.mount_point) for d in spec.data_disks),
        )

    @staticmethod
    def _cgroups() -> CgroupLayout:
        return host_layout()

    def create(self, spec: InstanceSpec, template: TemplateImage, progress: Progress) -> None:
        require_tool("lxc-start", "lxc")
        for name in ("common.conf", "userns.conf"):
            if not (self.include_dir / name).is_file():
                raise Unsupported(f"LXC's {self.include_dir / name} is missing (package lxc)")
        container_dir = self._container_dir(spec)
        if container_dir.exists():
            raise Conflict(f"container {lxc_name(spec)} already exists in {self.lxcpath}")
        config = self.config_for(spec, template)
        shift = 0 if config.idmap is None else config.idmap.uid.start
        if shift:
            _check_reachable(spec.directory, shift)
        with ExitStack() as undo:
            if not spec.directory.exists():
                spec.directory.mkdir(parents=True)
                undo.callback(_rmdir_if_empty, spec.directory)
            if spec.root_disk is None:  # else storage made it (a clone of a base image)
                progress(0.05, "building root disk")
                undo.callback(spec.disk_path.unlink, missing_ok=True)
                build_root_disk(template.rootfs, spec.disk_path, spec.resources.disk)
            progress(0.9, "writing container configuration")
            self.lxcpath.mkdir(parents=True, exist_ok=True)
            container_dir.mkdir(mode=0o750)
            undo.callback(shutil.rmtree, container_dir, ignore_errors=True)
            (container_dir / "config").write_text(render_config(config))
            undo.pop_all()
        progress(1.0, "created")

    def start(self, spec: InstanceSpec, template: TemplateImage) -> None:
        self._require_exists(spec)
        config_file = self._container_dir(spec) / "config"
        # NICs and data disks may have changed while it was stopped; a config written by an
        # older Corral has hooks that do not set their own PATH (startenv.py)
        if (spec.directory / NICS_FILE).exists() or spec.data_disks or _stale_config(
                config_file.read_text()):
            config_file.write_text(render_config(self.config_for(spec, template)))
        ct_resources.prepare_start(  # the persisted resources; a grown disk's filesystem
            spec, self._container_dir(spec) / "config", self._cgroups(),
            lambda: self.status(spec).state != RuntimeState.STOPPED,
        )
        # A monitor's group left behind means its monitor was killed (LXC removes it on
        # every stop), and lxc-start refuses to reuse it: cleared first, because retrying
        # after a failed start raced that start's aborting child, whose post-stop hook
        # unmounted the root the retry had just mounted ("Failed to exec /sbin/init", CI).
        # A normal start pays one stat per hierarchy.
        if cgroupfs.group_in_any(self._cgroups(), cgroup_dirs(lxc_name(spec))["monitor"]):
            self._clear_remains(spec)
        # Both kinds run from a host loop mount (a no-op when it is already mounted); an
        # unprivileged container maps it with idmap=container (config.py).
        mount_image(spec.disk_path, spec.run_dir / "rootfs")
        mount_data_disks(spec)
        proc = run([*self._args("lxc-start", spec), "-d"], check=False, timeout=START_TIMEOUT,
                   env=start_env())
        if proc.returncode != 0:
            # Asking the state only on failure keeps it off the start path; a running
            # container keeps its mount.
            if self._refuse_if_up(spec):
                return
            unmount(spec.run_dir / "rootfs")
            unmount_data_disks(spec)
            said = (proc.stderr or proc.stdout).decode(errors="replace").strip()
            raise HostFailure(
                f"container '{spec.name}' did not start: {said}\n{self._log_tail(spec)}"
            )
        # No lxc-wait: `lxc-start -d` exits 0 only once the container reported RUNNING on
        # its state socket (liblxc wait_on_daemonized_start: "Received container state X
        # instead of RUNNING" is its failure), so waiting again cost a process for nothing.
        # IO limits need the loop device that exists only now; every other limit came with
        # the config, so a container without IO limits skips the cgroup writes here.
        res = spec.resources
        if res.io_read_bps or res.io_write_bps or res.io_iops:
            ct_resources.apply_live(self._cgroups(), lxc_name(spec), spec.disk_path, res)
        self._watch_started(spec)

    def _watch_started(self, spec: InstanceSpec) -> None:
        """The started container's state read and watched now (its pidfd and freezer watch
        set: ``statuses``), on the start's path (~0.2 ms) rather than on the next ``list``'s:
        after a bulk start of 300 the first list read all 300 (~120 ms of its 210 ms)."""
        try:
            self.statuses([spec])
        except (OSError, ValueError) as exc:  # the next list reads it instead
            log.debug("container %s: state not kept at start: %s", spec.name, exc)

    def _clear_remains(self, spec: InstanceSpec) -> bool:
        """Before lxc-start: if the container is down but its monitor's or its own cgroup is
        still there (its LXC monitor was killed: no clean-up ran, and lxc-start refuses to
        reuse the monitor's group), remove those empty groups. Whether any was."""
        if self.status(spec).state != RuntimeState.STOPPED:
            return False
        left = self._remove_groups(spec)
        if left:
            log.warning("container %s: removed the cgroups its dead monitor left", spec.name)
        return left

    def _remove_groups(self, spec: InstanceSpec) -> bool:
        """Remove the container's and its monitor's groups (empty ones, deepest first) where
        they are left; whether any was."""
        layout, left = self._cgroups(), False
        for rel in (cgroup_dirs(lxc_name(spec))["monitor"],
                    cgroup_dirs(lxc_name(spec))["container"]):
            if cgroupfs.group_in_any(layout, rel):
                left = True
                cgroupfs.remove_empty_tree(layout, rel)
        return left

    def _refuse_if_up(self, spec: InstanceSpec) -> bool:
        """True if already running (start is then a no-op); Conflict if suspended."""
        current = self.status(spec).state
        if current == RuntimeState.SUSPENDED:
            raise Conflict(f"container '{spec.name}' is suspended; resume it")
        return current == RuntimeState.RUNNING

    def stop(self, spec: InstanceSpec, *, force: bool, timeout: float) -> None:
        current = self.status(spec).state
        if current in (RuntimeState.STOPPED, RuntimeState.MISSING):
            if current == RuntimeState.STOPPED:  # ended without its post-stop hook (a
                unmount(spec.run_dir / "rootfs")  # killed monitor): its mounts stay
                unmount_data_disks(spec)
            return
        if current == RuntimeState.SUSPENDED:
            # A frozen init cannot receive its halt signal, and frozen tasks die only on thaw.
            run(self._args("lxc-unfreeze", spec))
        if force:
            run([*self._args("lxc-stop", spec), "-k"], timeout=30)
        else:
            # lxc-stop sends lxc.signal.halt, waits up to -t seconds, then kills.
            grace = max(1, math.ceil(timeout))
            run([*self._args("lxc-stop", spec), "-t", str(grace)], timeout=grace + 30)
        if self.status(spec).state != RuntimeState.STOPPED:
            raise HostFailure(f"container '{spec.name}' is still running after lxc-stop")
        unmount(spec.run_dir / "rootfs")  # normally the post-stop hook did it
        unmount_data_disks(spec)

    def suspend(self, spec: InstanceSpec) -> None:
        self._require_state(spec, RuntimeState.RUNNING, "suspend")
        run(self._args("lxc-freeze", spec))

    def resume(self, spec: InstanceSpec) -> None:
        self._require_state(spec, RuntimeState.SUSPENDED, "resume")
        run(self._args("lxc-unfreeze", spec))

    def delete(self, spec: InstanceSpec) -> None:
        # Not lxc-destroy: its loop backend deletes the image file itself, and what LXC
        # keeps for a stopped container is only the config directory we wrote.
        current = self.status(spec).state
        if current in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
            raise Conflict(f"container '{spec.name}' is {current.value}; stop it first")
        rootfs_mount = spec.run_dir / "rootfs"
        unmount(rootfs_mount)
        _rmdir_if_empty(rootfs_mount)
        unmount_data_disks(spec)
        # a container CRIU restored (a move back, a memory revert) leaves its ``inner`` group
        # when it stops: LXC's clean-up knows only the groups it made itself
        try:
            self._remove_groups(spec)
        except HostFailure as exc:
            log.warning("container %s: its cgroups stay: %s", spec.name, exc.message)
        shutil.rmtree(self._container_dir(spec), ignore_errors=True)
        console = self._console_log(spec)
        owned = [spec.disk_path] if spec.root_disk is None else []  # pool disks: storage's
        for path in (*owned, console, console.with_name(CONSOLE_LOG + ".1"),
                     spec.directory / LXC_LOG):
            path.unlink(missing_ok=True)
        for record in spec.run_dir.glob("*.json"):  # a run's records (checkpoint.py's)
            record.unlink(missing_ok=True)
        _rmdir_if_empty(spec.run_dir)
        _rmdir_if_empty(spec.directory)

    # -- observing ------------------------------------------------------------------------

    def status(self, spec: InstanceSpec) -> RuntimeStatus:
        reader = ct_state.StateReader(self._cgroups())
        return reader.status(self._container_dir(spec), lxc_name(spec), spec.directory)

    def statuses(self, specs: Sequence[InstanceSpec]) -> dict[int, RuntimeStatus]:
        # Kept between calls while the kernel reports no change (pidfds, inotify).
        if self._states is None:
            self._states = StateCache(ct_state.StateReader(self._cgroups()))
        lxcpath = str(self.lxcpath)
        return self._states.statuses([
            Asked(spec.id, f"{lxcpath}/{lxc_name(spec)}", lxc_name(spec), str(spec.directory))
            for spec in specs])

    def exec(
        self, spec: InstanceSpec, argv: list[str], timeout: float | None, stdin: bytes = b""
    ) -> ExecResult:
        if not argv:
            raise Conflict("nothing to run: the command is empty")
        self._require_state(spec, RuntimeState.RUNNING, "exec in")
        command = [
            *self._args("lxc-attach", spec),
            "--clear-env",
            "--set-var", f"PATH={TOOL_PATH}",
            "--set-var", "HOME=/root",
            "--set-var", "TERM=dumb",
            "--",
            *argv,
        ]
        # On its deadline the command and everything it started inside are killed (exit 137,
        # the output so far is returned), as the VM agent does with ``timeout -s KILL``.
        done = run_with_deadline(command, input=stdin, timeout=timeout)
        return ExecResult(exit_code=done.returncode, stdout=done.stdout, stderr=done.stderr)

    def open_console(self, spec: InstanceSpec) -> ConsoleStream:
        current = self.status(spec).state
        if current not in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
            raise Conflict(f"container '{spec.name}' is {current.value}; start it first")
        with contextlib.suppress(OSError):  # restored by CRIU: its keeper has the console
            return RestoredConsole(restored_socket(spec.run_dir), lambda: self.status(spec).pid)
        console = LxcConsole([*self._args("lxc-console", spec), "-t", "0", "-e", _NO_ESCAPE],
                             lambda: self.status(spec).pid)
        if not console.wait_until_raw(CONSOLE_ATTACH_TIMEOUT):
            said = console.output_so_far().decode(errors="replace").strip()
            console.close()
            raise HostFailure(f"cannot attach to the console of '{spec.name}': {said}")
        return console

    def console_log(self, spec: InstanceSpec, limit: int = 65536) -> bytes:
        current = self._console_log(spec)
        return _tail([current.with_name(CONSOLE_LOG + ".1"), current], limit)

    # -- resources ------------------------------------------------------------------------

    def apply_resources(
        self, spec: InstanceSpec, old: Resources, new: Resources
    ) -> AppliedChange:
        self._require_exists(spec)
        running = self.status(spec).state in (RuntimeState.RUNNING, RuntimeState.SUSPENDED)
        return ct_resources.apply(spec, lxc_name(spec), self._container_dir(spec) / "config",
                                  self._cgroups(), old, new, running)

    def stats(self, spec: InstanceSpec) -> InstanceStats:
        layout = self._cgroups()
        running = bool(ct_state.StateReader(layout).members(ct_resources.cgroup_path(
            lxc_name(spec))))
        return ct_resources.stats(spec, lxc_name(spec), layout, running)

    def stats_many(self, specs: Sequence[InstanceSpec]) -> dict[int, InstanceStats]:
        layout = self._cgroups()
        states = self.statuses(specs)  # kept states: no cgroup.procs read per container
        reader, found = cgroupfs.UsageReader(layout), {}
        up = (RuntimeState.RUNNING, RuntimeState.SUSPENDED)
        for spec in specs:
            state = states.get(spec.id)
            with contextlib.suppress(OSError, ValueError):
                found[spec.id] = ct_resources.stats(
                    spec, lxc_name(spec), layout, state is not None and state.state in up,
                    reader)
        return found

    def adopted(self, spec: InstanceSpec) -> None:
        del spec  # a container's start leaves nothing boosted

    def cpu_times(self, specs: Sequence[InstanceSpec]) -> dict[int, int]:
        reader, found = cgroupfs.UsageReader(self._cgroups()), {}
        up = (RuntimeState.RUNNING, RuntimeState.SUSPENDED)
        states = self.statuses(specs)
        for spec in specs:
            state = states.get(spec.id)
            if state is not None and state.state in up:
                found[spec.id] = reader.cpu_ns(ct_resources.cgroup_path(lxc_name(spec)))
        return found

    # -- helpers --------------------------------------------------------------------------

    def _require_exists(self, spec: InstanceSpec) -> None:
        if not (self._container_dir(spec) / "config").is_file():
            raise NotFound(f"container '{spec.name}' has no LXC configuration on this host")

    def _require_state(self, spec: InstanceSpec, wanted: RuntimeState, action: str) -> None:
        current = self.status(spec).state
        if current != wanted:
            raise Conflict(f"cannot {action} container '{spec.name}': it is {current.value}")

    def _log_tail(self, spec: InstanceSpec, limit: int = 4096) -> str:
        return _tail([spec.directory / LXC_LOG], limit).decode(errors="replace").strip()


def _tail(paths: list[Path], limit: int) -> bytes:
    """The last ``limit`` bytes of the files ``paths`` joined in order (missing ones skipped)."""
    chunks: list[bytes] = []
    remaining = limit
    for path in reversed(paths):
        if remaining <= 0:
            break
        with contextlib.suppress(FileNotFoundError), path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - remaining))
            data = handle.read()
            chunks.append(data)
            remaining -= len(data)
    return b"".join(reversed(chunks))


def _check_reachable(directory: Path, uid: int) -> None:
    """The container's root (host uid ``uid``) must be able to walk to its disk image."""
    for path in [*reversed(directory.parents), directory]:
        try:
            st = path.stat()
        except FileNotFoundError:
            return  # create makes it (mode 0755)
        if st.st_mode & stat.S_IXOTH or (st.st_uid == uid and st.st_mode & stat.S_IXUSR):
            continue
        raise Unsupported(
            f"an unprivileged container's root (host uid {uid}) cannot reach {directory}: "
            f"{path} is not searchable by others (chmod o+x {path})"
        )


def _rmdir_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


def wait_for_console(spec: InstanceSpec, driver: LxcDriver, marker: bytes, timeout: float) -> bool:
    """Whether ``marker`` shows up in the console log within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker in driver.console_log(spec):
            return True
        time.sleep(0.01)
    return False
