"""CRIU checkpoint and restore of a container, through ``lxc-checkpoint``.

LXC drives CRIU (``--tcp-established``, ``--freeze-cgroup``, the cgroup roots, the veth NICs as
``--external veth[ethN]:<host end>@<bridge>`` so a restore re-creates them on the bridge) and
its restore leaves a monitor behind, so ``exec``, ``stop`` and the state reader work on a
restored container as on a started one. What LXC 5.0.2 gets wrong, and what is done here:

* its post-stop hook unmounts the root *after* ``lxc-checkpoint -s`` returned; a restore that
  mounted the root meanwhile lost it to that hook ("mnt-v2: Can't stat mountpoint …/dev", the
  failure that made this test opt-in): a stopping dump waits for the unmount;
* it cannot restore a container with a console ("lxc.console.path configured on source host
  but not target": LXC 5 makes the console pty inside the container's devpts, only at start).
  So the pty binds (``/dev/console``, ``/dev/lxc/console``, ``/dev/ttyN``) are detached in the
  container just before the dump (bound again if it runs on); LXC's ``tty.info`` is renamed
  so LXC passes nothing, and the restore hands CRIU a new pty (``--inherit-fd`` through a
  CRIU configuration file) whose master a detached ``cat`` drains into ``console.log``.
  A restored container has no ``corral console`` (its monitor has no console) until its next
  start; its console output goes on into the log;
* an unprivileged container's root is an idmapped mount, which LXC's restore does not make
  (it binds ``lxc.rootfs.path`` plainly): refused (``refusal``).

Corral's containers run from a loop mount the driver makes before ``lxc-start`` and a post-stop
hook removes; a restore mounts root and data disks first (as ``start`` does) and unmounts them
again if CRIU fails. Used by memory snapshots and by checkpoint/restore migration.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import time
from pathlib import Path

from corral.domain.errors import HostFailure
from corral.domain.instance import InstanceSpec
from corral.drivers.base import RuntimeState
from corral.drivers.lxc.config import cgroup_dirs
from corral.drivers.lxc.disks import mount_data_disks, unmount_data_disks
from corral.drivers.lxc.driver import CONSOLE_LOG, LxcDriver, lxc_name
from corral.drivers.lxc.state import StateReader
from corral.host import criu, nsmount
from corral.host.loopmount import loop_devices
from corral.host.mounts import mount_image, unmount
from corral.host.pty import console_keeper
from corral.host.run import run

TIMEOUT = 300
UNMOUNT_WAIT = 10.0
TTY_INFO = "tty.info"  # LXC's: the console's CRIU id, tty[rdev:dev]
OUR_TTY_INFO = "corral-tty.info"
RESTORE_CONF = "corral-restore.conf"
DUMP_CONF = "corral-dump.conf"
_PTY_BIND = re.compile(r"^/dev/(console|tty\d+|lxc/console|lxc/tty\d+)$")


def refusal(spec: InstanceSpec) -> str | None:
    """Why ``spec`` cannot be checkpointed and restored here (None: it can)."""
    status = criu.probe()
    if not status.works:
        return f"CRIU does not work here: {status.reason}"
    if not spec.privileged:
        return ("LXC 5.0's restore mounts an unprivileged container's root without its idmap "
                "(its root could not open its own files)")
    return None


def systemd_refusal(pid: int | None) -> str | None:
    """A container whose init is systemd: CRIU dumps it but cannot restore it here (cgroup2
    fsnotify marks), so it is refused before anything is dumped."""
    if pid is None:
        return None
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
            return "CRIU cannot restore a systemd container here (cgroup2 fsnotify)"
    return None


def _failure(verb: str, spec: InstanceSpec, directory: Path, said: bytes) -> HostFailure:
    """lxc-checkpoint's own words, plus CRIU's errors from its log in ``directory``."""
    log = directory / f"{verb}.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    errors = [line.strip() for line in lines if "Error" in line
              and "tables" not in line][-5:]  # CRIU probes ip(6)tables-restore: noise here
    text = "\n".join([said.decode(errors="replace").strip(), *errors]).strip()
    return HostFailure(f"CRIU {verb} of container '{spec.name}' failed: {text}")


def _pty_binds(pid: int) -> dict[str, str]:
    """The container's binds of single ptys of its devpts (console, ttys): mount point ->
    the pty (``/0``)."""
    found: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        kind = fields[fields.index("-") + 1] if "-" in fields else ""
        if kind == "devpts" and _PTY_BIND.match(fields[4]) and fields[3] != "/":
            found[fields[4]] = fields[3]
    return found


def _console_id(pid: int, bound: bool) -> str | None:
    """CRIU's name of the container's console pty (as LXC computes it): the one bound at
    its /dev/console, or (a container restored before: the pty Corral handed over, outside
    its devpts) the pty its init has as stdin."""
    path = f"/proc/{pid}/root/dev/console" if bound else f"/proc/{pid}/fd/0"
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not bound and not (stat.S_ISCHR(st.st_mode) and 136 <= os.major(st.st_rdev) <= 143):
        return None  # not a pty (Unix 98 pty slaves: majors 136-143)
    return f"tty[{st.st_rdev:x}:{st.st_dev:x}]"


def _criu_config(path: Path, lines: list[str]) -> dict[str, str]:
    """The environment that makes the CRIU which LXC runs read ``lines`` as options too;
    log level 3 so the log's last line is the end of CRIU's work (its own time, in the
    migration record and bench/migrate.py)."""
    path.write_text("\n".join(["verbosity 3", *lines]) + "\n")
    return {**os.environ, "CRIU_CONFIG_FILE": str(path)}


def _rebind(pid: int, binds: dict[str, str]) -> None:
    for target, pty in binds.items():
        nsmount.bind_in(pid, f"/dev/pts/{pty.lstrip('/')}", [target])


def dump(driver: LxcDriver, spec: InstanceSpec, directory: Path, *, stop: bool) -> None:
    """Checkpoint the running (or frozen) ``spec`` into ``directory``; ``stop``: it stops once
    dumped, else it runs on (unchanged: its pty binds are made again)."""
    status = driver.status(spec)
    if status.state not in (RuntimeState.RUNNING, RuntimeState.SUSPENDED) or status.pid is None:
        raise HostFailure(f"container '{spec.name}' is {status.state.value}: nothing to dump")
    directory.mkdir(parents=True, exist_ok=True)
    binds = _pty_binds(status.pid)
    console = _console_id(status.pid, "/dev/console" in binds)
    # LXC would name the console by what it finds at /dev/console once unbound: CRIU is
    # told the real one (the dump then leaves it out as external)
    env = _criu_config(directory / DUMP_CONF,
                       [] if console is None else [f"external {console}"])
    if binds:
        nsmount.unmount_in(status.pid, list(binds))
    args = [*driver._args("lxc-checkpoint", spec), "-D", str(directory)]
    try:
        proc = run([*args, "-s" if stop else "-v"], check=False, timeout=TIMEOUT, env=env)
    finally:
        if driver.status(spec).state is not RuntimeState.STOPPED:
            _rebind(status.pid, binds)
    if proc.returncode != 0:
        raise _failure("dump", spec, directory, proc.stderr or proc.stdout)
    (directory / TTY_INFO).unlink(missing_ok=True)  # LXC's restore would refuse it
    if console is not None:  # restore() hands CRIU a console itself
        (directory / OUR_TTY_INFO).write_text(console + "\n")
    if stop:
        released(spec)


def released(spec: InstanceSpec) -> None:
    """Wait until a container that a dump stopped has let go of its root image. LXC runs the
    post-stop hook (which unmounts the root) after ``lxc-checkpoint -s`` has returned, and
    the filesystem lives on in the dead container's mount namespace until the kernel tears
    that down: a restore that mounted the image meanwhile lost its root to the hook, or got a
    second ext4 instance of the same image beside the unflushed first one (CRIU: "Can't
    open file …: Bad message"). Gone once the loop device is (autoclear)."""
    mountpoint = spec.run_dir / "rootfs"
    deadline = time.monotonic() + UNMOUNT_WAIT
    while os.path.ismount(mountpoint) or loop_devices(spec.disk_path):
        if time.monotonic() > deadline:
            if os.path.ismount(mountpoint):
                unmount(mountpoint)
            return
        time.sleep(0.005)


def _monitor_gone(driver: LxcDriver, spec: InstanceSpec) -> None:
    """Wait until the LXC monitor of a container that just stopped has removed its cgroups
    in every hierarchy (a restore fails to create them otherwise: "cgfsng_payload_create:
    Numerical result out of range"), as for a source restoring its own dump right after the
    dump stopped it. Groups still there, empty, after the wait are removed here (bottom-up:
    only an empty cgroup can be removed)."""
    layout = driver._cgroups()
    rel = cgroup_dirs(lxc_name(spec))["container"]
    roots = {*layout.v1.values(), *([layout.v2_mount] if layout.v2_mount else [])}
    groups = [root / rel for root in roots]
    if StateReader(layout).members(rel):
        return  # processes in it: not stopped (restore refuses it)
    deadline = time.monotonic() + UNMOUNT_WAIT / 2
    while any(g.exists() for g in groups) and time.monotonic() < deadline:
        time.sleep(0.01)
    for group in groups:
        if group.exists():
            for path, _dirs, _files in sorted(os.walk(group), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(path)


def restore(driver: LxcDriver, spec: InstanceSpec, directory: Path) -> None:
    """Resume the stopped ``spec`` from the checkpoint in ``directory``."""
    _monitor_gone(driver, spec)
    if driver.status(spec).state is not RuntimeState.STOPPED:
        raise HostFailure(f"container '{spec.name}' must be stopped to restore a checkpoint")
    mount_image(spec.disk_path, spec.run_dir / "rootfs")
    mount_data_disks(spec)
    fds: list[int] = []
    lines = []
    tty = directory / OUR_TTY_INFO
    if tty.exists():
        fds.append(console_keeper(str(spec.directory / CONSOLE_LOG)))
        lines.append(f"inherit-fd fd[3]:{tty.read_text().strip()}")
    env = _criu_config(directory / RESTORE_CONF, lines)
    # Its monitor must not look for a console of its own (it has none after a restore and
    # its poll loop would end on that, leaving the container without a monitor): the
    # configuration it reads says so, only while it starts.
    config = driver.lxcpath / lxc_name(spec) / "config"
    text = config.read_text()
    try:
        config.write_text(text + "lxc.console.path = none\nlxc.tty.max = 0\n")
        proc = run([*driver._args("lxc-checkpoint", spec), "-r", "-D", str(directory)],
                   check=False, timeout=TIMEOUT, env=env, fds=fds)
    finally:
        config.write_text(text)
        for fd in fds:
            os.close(fd)
    if proc.returncode != 0:
        if driver.status(spec).state is RuntimeState.STOPPED:
            released(spec)
            unmount(spec.run_dir / "rootfs")
            unmount_data_disks(spec)
        raise _failure("restore", spec, directory, proc.stderr or proc.stdout)
