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
  CRIU configuration file) whose master a detached keeper (``host/consolekeep.py``) drains
  into ``console.log`` and serves to ``corral console`` (its monitor has no console), the
  pty's group the container's own ``tty``;
* an unprivileged container's root is an idmapped mount, which LXC's restore does not make
  (it binds ``lxc.rootfs.path`` plainly): Corral makes the idmapped mount itself
  (``host/idmount.py``) beside the loop mount and points the restoring LXC at it (a bind of
  an idmapped mount keeps the idmap); where the kernel or file system cannot, ``refusal``
  says so with the kernel's words (the probe is one real idmapped mount, cached); its data
  disks' binds likewise (LXC hands CRIU each bind's plain source);
* its restoring monitor writes none of the configuration's limits: they are written into
  the instance's group once CRIU returned.

Corral's containers run from a loop mount the driver makes before ``lxc-start`` and a post-stop
hook removes; a restore mounts root and data disks first (as ``start`` does) and unmounts them
again if CRIU fails. Used by memory snapshots and by checkpoint/restore migration.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from corral.domain.errors import CorralError, HostFailure
from corral.domain.instance import InstanceSpec
from corral.drivers.base import RuntimeState
from corral.drivers.lxc import criuargs
from corral.drivers.lxc.config import INNER, cgroup_dirs
from corral.drivers.lxc.console import restored_socket
from corral.drivers.lxc.disks import data_mount, mount_data_disks, unmount_data_disks
from corral.drivers.lxc.driver import CONSOLE_LOG, LxcDriver, lxc_name
from corral.drivers.lxc.resources import apply_live
from corral.drivers.lxc.state import StateReader
from corral.drivers.migration import DUMP_COMPLETE, PhaseClock
from corral.host import criu, freezer, idmount, nsmount, procfs
from corral.host.idmap import root_idmap
from corral.host.loopmount import loop_devices
from corral.host.mounts import mount_image, unmount
from corral.host.net import NetHost
from corral.host.pty import console_keeper
from corral.host.run import run, run_while
from corral.network.nicfile import read_nics

log = logging.getLogger("corral.lxc")
TIMEOUT = 300
UNMOUNT_WAIT = 10.0
TTY_INFO = "tty.info"  # LXC's: the console's CRIU id, tty[rdev:dev]
OUR_TTY_INFO = "corral-tty.info"
RESTORE_CONF = "corral-restore.conf"
DUMP_CONF = "corral-dump.conf"
DUMPABLE = "criu-dumpable.json"
DUMPABLE_SECONDS = 600.0
"""How long a trial dump's verdict stands for the same container run and configuration."""
_PTY_BIND = re.compile(r"^/dev/(console|tty\d+|lxc/console|lxc/tty\d+)$")


def refusal(spec: InstanceSpec) -> str | None:
    """Why ``spec`` cannot be checkpointed and restored here (None: it can)."""
    status = criu.probe()
    if not status.works:
        return f"CRIU does not work here: {status.reason}"
    if not spec.privileged:
        return idmap_refusal(spec)
    return None


IDMAP_ROOT = "rootfs-idmap"
"""Where (in the run directory) the restore's idmapped view of the root is mounted."""


def idmap_refusal(spec: InstanceSpec) -> str | None:
    """Why the idmapped root an unprivileged restore needs cannot be made here: probed on the
    container's own root mount while it runs (else the verdict cached for its file system
    type, or None: the restore itself then says)."""
    idmap = root_idmap()
    if idmap is None:
        return "root has no subordinate id range for the restored container's idmap"
    mounted = spec.run_dir / "rootfs"
    if os.path.ismount(mounted):
        return idmount.probe(mounted, idmap)
    return idmount.cached()


def systemd_refusal(pid: int | None) -> str | None:
    """A container whose init is systemd: CRIU dumps it but cannot restore it here (cgroup2
    fsnotify marks), so it is refused before anything is dumped."""
    if pid is None:
        return None
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
            return "CRIU cannot restore a systemd container here (cgroup2 fsnotify)"
    return None


_NOISE = ("tables", "RLIMIT_NOFILE")
"""CRIU errors that are no cause: its ip(6)tables-restore probes, and raising its own open
file limit, which an unprivileged container's user namespace refuses on every run."""
_SESSION_LEADER = re.compile(r"A session leader of \d+\((\d+)\) is outside of its pid namespace")


def plain_reason(spec: InstanceSpec, errors: list[str]) -> str:
    """What an operator can do about CRIU's ``errors``, in plain words ("" if not known)."""
    for line in errors:
        found = _SESSION_LEADER.search(line)
        if found:
            return (f"process {found.group(1)} in the container was left behind by an exec "
                    "(corral exec / lxc-attach): its session began outside the container, "
                    "which CRIU cannot dump; end it (`corral exec "
                    f"{spec.name} -- kill {found.group(1)}`) and try again. CRIU said: ")
    return ""


def _failure(verb: str, spec: InstanceSpec, directory: Path, said: bytes) -> HostFailure:
    """lxc-checkpoint's own words, plus CRIU's errors from its log in ``directory`` (after
    a plain reason where one is known)."""
    log = directory / f"{verb}.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    errors = [line.strip() for line in lines if "Error" in line
              and not any(noise in line for noise in _NOISE)][-5:]
    text = "\n".join([said.decode(errors="replace").strip(), *errors]).strip()
    return HostFailure(f"CRIU {verb} of container '{spec.name}' failed: "
                       f"{plain_reason(spec, errors)}{text}")


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


DETACHED = "corral-detached-consoles.json"


def detach_consoles(driver: LxcDriver, spec: InstanceSpec) -> None:
    """Before a stopping dump, while the container still runs: its pty binds detached (a
    short Python child, ~20-40 ms here, then not in the downtime) and what they were left in
    the run directory for ``dump`` (which binds them again if the container runs on)."""
    pid = driver.status(spec).pid
    if pid is None:
        return
    binds = _pty_binds(pid)
    console = _console_id(pid, "/dev/console" in binds)
    (spec.run_dir / DETACHED).write_text(
        json.dumps({"pid": pid, "binds": binds, "console": console}))
    if binds:
        try:
            nsmount.unmount_in(pid, list(binds))
        except HostFailure:
            (spec.run_dir / DETACHED).unlink(missing_ok=True)
            with contextlib.suppress(HostFailure):  # those it did detach
                _rebind(pid, {t: p for t, p in binds.items()
                              if t not in nsmount.mount_roots(pid, list(binds))})
            raise


def reattach_consoles(driver: LxcDriver, spec: InstanceSpec) -> None:
    """Undo ``detach_consoles`` when no dump follows (the container runs on)."""
    pid = driver.status(spec).pid
    detached = None if pid is None else _take_detached(spec, pid)
    if pid is not None and detached is not None:
        _rebind(pid, detached[0])


def _take_detached(spec: InstanceSpec, pid: int) -> tuple[dict[str, str], str | None] | None:
    """The binds and console id ``detach_consoles`` recorded for this run (None: none)."""
    path = spec.run_dir / DETACHED
    try:
        found = json.loads(path.read_text())
        path.unlink()
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict) or found.get("pid") != pid:
        return None
    console = found.get("console")
    return ({str(k): str(v) for k, v in dict(found.get("binds") or {}).items()},
            None if console is None else str(console))


def dump(driver: LxcDriver, spec: InstanceSpec, directory: Path, *, stop: bool,
         wait_release: bool = True) -> None:
    """Checkpoint the running (or frozen) ``spec`` into ``directory``; ``stop``: it stops once
    dumped, else it runs on (unchanged: its pty binds are made again). A stopped one's root
    is released before this returns unless ``wait_release`` is False (then ``released`` is
    the caller's, before anything reads the image or restores it)."""
    clock = PhaseClock()
    criu.kdat_dir()
    status = driver.status(spec)
    if status.state not in (RuntimeState.RUNNING, RuntimeState.SUSPENDED) or status.pid is None:
        raise HostFailure(f"container '{spec.name}' is {status.state.value}: nothing to dump")
    # LXC refuses a directory that holds images ("please use a fresh directory"): what an
    # earlier dump left there (a move cut short, then restored or retried) is of a container
    # that has run on since
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    detached = _take_detached(spec, status.pid)
    if detached is None:
        binds = _pty_binds(status.pid)
        console = _console_id(status.pid, "/dev/console" in binds)
    else:
        binds, console = detached
    # LXC would name the console by what it finds at /dev/console once unbound: CRIU is
    # told the real one (the dump then leaves it out as external)
    env = _criu_config(directory / DUMP_CONF,
                       [] if console is None else [f"external {console}"])
    if binds and detached is None:
        nsmount.unmount_in(status.pid, list(binds))
    key = dumpable_key(_config(driver, spec), status.pid)
    rel = cgroup_dirs(lxc_name(spec))["container"]
    argv, tool = criuargs.dump_argv(driver._args("lxc-checkpoint", spec), spec.run_dir, key,
                                    directory, stop, status.pid, rel)
    clock.mark("console unbind")
    group = criuargs.freeze_group(argv) if tool == "criu dump" else None
    if group is not None and freezer.freeze(group):
        clock.mark("freeze")
    else:
        group = None
    failed = True
    try:
        proc, ran = run_while(argv, criuargs.watch if tool == "lxc-checkpoint"
                              else lambda _p: argv, check=False, timeout=TIMEOUT, env=env)
        failed = proc.returncode != 0
    finally:
        clock.mark(tool)
        if failed and group is not None:
            freezer.thaw(group)
        if driver.status(spec).state is not RuntimeState.STOPPED:
            _rebind(status.pid, binds)
    if proc.returncode != 0:
        forget_dumpable(spec)
        raise _failure("dump", spec, directory, proc.stderr or proc.stdout)
    if not stop:
        remember_dumpable(driver, spec)
        criuargs.record(spec.run_dir, key, directory, ran, status.pid, rel)
    else:
        criuargs.leave_in_images(directory, ran, status.pid, rel)
    (directory / TTY_INFO).unlink(missing_ok=True)  # LXC's restore would refuse it
    if console is not None:  # restore() hands CRIU a console itself
        (directory / OUR_TTY_INFO).write_text(console + "\n")
    (directory / DUMP_COMPLETE).touch()  # last: the images are whole
    if stop and wait_release:
        released(spec)
        clock.mark("root released")
    clock.save(directory, "dump")


def dumpable_key(config: Path, pid: int) -> str:
    """What a trial dump's verdict holds for: this run of the container (its init's pid
    and start time) and its LXC configuration (the file ``config``); "" if either is gone."""
    started = procfs.start_time(pid)
    try:
        text = config.read_bytes()
    except OSError:
        return ""
    if started is None:
        return ""
    return hashlib.sha256(b"%d %d " % (pid, started) + text).hexdigest()


def _config(driver: LxcDriver, spec: InstanceSpec) -> Path:
    return driver.lxcpath / lxc_name(spec) / "config"


def remember_dumpable(driver: LxcDriver, spec: InstanceSpec) -> None:
    """A leave-running dump of ``spec`` succeeded, or a restore from a dump: recorded for
    ``dumped_recently``."""
    pid = driver.status(spec).pid
    key = "" if pid is None else dumpable_key(_config(driver, spec), pid)
    if key:
        with contextlib.suppress(OSError):
            (spec.run_dir / DUMPABLE).write_text(json.dumps({"key": key, "at": time.time()}))


def dumped_recently(driver: LxcDriver, spec: InstanceSpec) -> bool:
    """Whether a leave-running dump of this same run of ``spec``, with the same LXC
    configuration, succeeded within ``DUMPABLE_SECONDS``: a migration then skips its trial
    dump (one freeze fewer). Processes that came since (an exec) can still make the real
    dump fail: the container runs on, the verdict is forgotten, and the move falls back to
    the restart path with CRIU's words (services/migration/source.py)."""
    try:
        found = json.loads((spec.run_dir / DUMPABLE).read_text())
        key, at = str(found["key"]), float(found["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    pid = driver.status(spec).pid
    return (pid is not None and 0 <= time.time() - at < DUMPABLE_SECONDS
            and key == dumpable_key(_config(driver, spec), pid))


def forget_dumpable(spec: InstanceSpec) -> None:
    (spec.run_dir / DUMPABLE).unlink(missing_ok=True)
    criuargs.forget(spec.run_dir)


def released(spec: InstanceSpec) -> None:
    """Wait until a container that a dump stopped has let go of its root image. LXC runs the
    post-stop hook (which unmounts the root) after ``lxc-checkpoint -s`` has returned, and
    the filesystem lives on in the dead container's mount namespace until the kernel tears
    that down: a restore that mounted the image meanwhile lost its root to the hook, or got a
    second ext4 instance of the same image beside the unflushed first one (CRIU: "Can't
    open file …: Bad message"). Gone once the loop device is (autoclear). Still held after
    the wait (the host's mount removed, the loop device still bound): a HostFailure, not a
    second mount of the image beside the first (the writes the first had not flushed were
    lost: zeros in a file, seen once in tests/system/test_criu_real.py under load)."""
    mountpoint = spec.run_dir / "rootfs"
    deadline = time.monotonic() + UNMOUNT_WAIT
    while os.path.ismount(mountpoint) or loop_devices(spec.disk_path):
        if time.monotonic() > deadline:
            if os.path.ismount(mountpoint):
                unmount(mountpoint)
            if not loop_devices(spec.disk_path):
                return
            if time.monotonic() > deadline + UNMOUNT_WAIT / 5:
                log.warning("container %s: root image still attached %g s after its dump",
                            spec.name, UNMOUNT_WAIT * 1.2)
                raise HostFailure(
                    f"the root image of container '{spec.name}' is still in use "
                    f"{UNMOUNT_WAIT * 1.2:g} s after its dump stopped it: not mounted again "
                    "(a second mount beside the first would lose what it has not written)")
        time.sleep(0.005)


def _monitor_gone(driver: LxcDriver, spec: InstanceSpec) -> None:
    """Wait until the LXC monitor of a container that just stopped has removed its cgroups
    in every hierarchy (a restore fails to create them otherwise: "cgfsng_payload_create:
    Numerical result out of range"), as for a source restoring its own dump right after the
    dump stopped it. Its own group (``monitor/<name>``, removed last, once it moved to the
    pivot) counts too: a monitor still tearing down removes the container's groups, those
    the restoring LXC has just made among them (CRIU: "cg: Can't make cgroup dir"). Groups
    still there, empty, after the wait are removed here (bottom-up: only an empty cgroup
    can be removed)."""
    layout = driver._cgroups()
    dirs = cgroup_dirs(lxc_name(spec))
    rel = dirs["container"]
    roots = {*layout.v1.values(), *([layout.v2_mount] if layout.v2_mount else [])}
    groups = [root / group for root in roots for group in (rel, dirs["monitor"])]
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


def restore(driver: LxcDriver, spec: InstanceSpec, directory: Path) -> float:
    """Resume the stopped ``spec`` from the checkpoint in ``directory``; the wall clock when
    its processes ran again (CRIU's restore returned: before Corral's clean-up). A restore
    CRIU gave up while it prepared the cgroups (``cgroup_race``: before any task existed,
    every step undone by the failure path) is tried once more."""
    try:
        return _restore_once(driver, spec, directory, PhaseClock())
    except CgroupRace as race:
        log.warning("container %s: CRIU's restore failed preparing its cgroups, tried once "
                    "more: %s", spec.name, race.message)
        clock = PhaseClock()
        clock.mark("first try (cgroup race)")
        return _restore_once(driver, spec, directory, clock)


class CgroupRace(HostFailure):
    """CRIU's restore failed while it made or checked the restored tasks' cgroups."""


_CGROUP_PREPARE = re.compile(
    r"\(criu/cgroup\.c:\d+\): cg: (Can't make cgroup dir|Failed accessing cgroup dir"
    r"|Cgroup dir \S+ doesn't exist)")


def thaw_restored(driver: LxcDriver, spec: InstanceSpec) -> None:
    """After a restore: every dump is of a running container, but one taken with its group
    frozen (a move's stopping dump, a memory snapshot's quiescing) is restored frozen, as
    CRIU found it, in the group the restore maps the dump's root to (``inner``, see the
    ``cgroup-root`` line) or the container's: its processes run again (a thawed group is
    left as it is). ``lxc-unfreeze`` leaves such a group FROZEN: the freezer is written
    directly."""
    layout = driver._cgroups()
    rel = cgroup_dirs(lxc_name(spec))["container"]
    root = layout.v1.get("freezer") or layout.v2_mount
    if root is not None:
        freezer.thaw(root / rel / INNER)
        freezer.thaw(root / rel)


def cgroup_race(log_text: str) -> bool:
    """Whether CRIU's restore log says it failed in ``prepare_cgroup_dirs``: that runs in
    ``prepare_cgroup``, before the root task is forked (cr-restore.c ``cr_restore_tasks``),
    so nothing was restored and the same images can be restored again. Seen once at load
    ~24 ("cg: Can't make cgroup dir cpu//<root>/ct/<id>": a group LXC had just made was
    gone, and making it again failed)."""
    return any(_CGROUP_PREPARE.search(line) for line in log_text.splitlines()
               if "Error (" in line)


def _restore_once(driver: LxcDriver, spec: InstanceSpec, directory: Path,
                  clock: PhaseClock) -> float:
    criu.kdat_dir()
    _monitor_gone(driver, spec)
    if driver.status(spec).state is not RuntimeState.STOPPED:
        raise HostFailure(f"container '{spec.name}' must be stopped to restore a checkpoint")
    clock.mark("old monitor gone")
    mount_image(spec.disk_path, spec.run_dir / "rootfs")
    mount_data_disks(spec)
    clock.mark("mounts")
    try:
        root = _restore_root(spec)
        disks = _restore_disks(spec)
        clock.mark("idmapped root")
    except HostFailure:
        _release_idmapped(spec)
        unmount(spec.run_dir / "rootfs")
        unmount_data_disks(spec)
        raise
    fds: list[int] = []
    lines = []
    tty = directory / OUR_TTY_INFO
    if tty.exists():
        fds.append(console_keeper(str(spec.directory / CONSOLE_LOG),
                                  str(restored_socket(spec.run_dir))))
        if not spec.privileged and (idmap := root_idmap()) is not None:
            # CRIU gives the console back its owner (root, group tty) from inside the
            # container's user namespace, where only the container's own ids can be given
            group = tty_gid(spec.run_dir / "rootfs", idmap.gid.count)
            os.fchown(fds[-1], idmap.uid.start, idmap.gid.start + group)
        lines.append(f"inherit-fd fd[3]:{tty.read_text().strip()}")
    try:
        veths = [] if spec.privileged else _precreate_veths(spec)
    except HostFailure:
        for fd in fds:
            os.close(fd)
        _release_idmapped(spec)
        unmount(spec.run_dir / "rootfs")
        unmount_data_disks(spec)
        raise
    lines += [f"external netdev[{guest}]:{peer}" for guest, peer, _host in veths]
    # CRIU puts the tasks back in the cgroups they were dumped from: another host's id (and
    # cgroup root) after a move, a group of another instance here or none of this one's, so
    # no limit or figure of this instance would apply. The dump's root group (where the
    # container's init ran, LXC's ``inner``) becomes this instance's.
    lines.append(f"cgroup-root /{cgroup_dirs(lxc_name(spec))['container']}/{INNER}")
    clock.mark("console and veths")
    # The configuration the restoring monitor reads (_restore_config), only while it starts
    config = driver.lxcpath / lxc_name(spec) / "config"
    text = config.read_text()
    try:
        config.write_text(_restore_config(text, spec, root, disks))
        with _readable_by_container(directory, spec.privileged) as images:
            env = _criu_config(images / RESTORE_CONF, lines)
            clock.mark("images opened")
            proc = run([*driver._args("lxc-checkpoint", spec), "-r", "-D", str(images)],
                       check=False, timeout=TIMEOUT, env=env, fds=fds)
            if proc.returncode == 0:
                thaw_restored(driver, spec)
            resumed_at = time.time()
            clock.mark("lxc-checkpoint -r")
    finally:
        config.write_text(text)
        for fd in fds:
            os.close(fd)
        _release_idmapped(spec)  # the container has its own binds of them now
        clock.mark("clean-up")
        clock.save(directory, "restore")
    if proc.returncode != 0:
        for _guest, _peer, host_end in veths:
            NetHost().delete_link(host_end)  # the pair, if CRIU did not take its end
        if driver.status(spec).state is RuntimeState.STOPPED:
            released(spec)
            unmount(spec.run_dir / "rootfs")
            unmount_data_disks(spec)
        failure = _failure("restore", spec, directory, proc.stderr or proc.stdout)
        if _raced(directory, spec, driver):
            raise CgroupRace(failure.message)
        raise failure
    _limits_after_restore(driver, spec)
    remember_dumpable(driver, spec)  # all its processes were dumped and restored just now
    restored = driver.status(spec).pid
    criuargs.adopt(spec.run_dir, "" if restored is None else dumpable_key(
        _config(driver, spec), restored), directory)
    return resumed_at


def _raced(directory: Path, spec: InstanceSpec, driver: LxcDriver) -> bool:
    """The failed restore is a ``cgroup_race`` and the container is stopped again, its
    groups gone (``_monitor_gone``): a second try starts from where the first did."""
    try:
        text = (directory / "restore.log").read_text(errors="replace")
    except OSError:
        return False
    if not cgroup_race(text) or driver.status(spec).state is not RuntimeState.STOPPED:
        return False
    _monitor_gone(driver, spec)
    return True


def _limits_after_restore(driver: LxcDriver, spec: InstanceSpec) -> None:
    """Write the instance's limits into its group once CRIU has put the tasks back: what the
    restoring monitor set from its configuration may not be what acts (CRIU's
    ``manage-cgroups=full`` writes the dumped groups' own properties back), and the IO
    limits name the root's loop device, which is new. After the resume (not downtime); a
    write the kernel refuses (memory below what the restored tasks use) is logged, the
    container runs on."""
    try:
        apply_live(driver._cgroups(), lxc_name(spec), spec.disk_path, spec.resources)
    except CorralError as exc:
        log.warning("restored container %s: its limits were not all applied: %s",
                    spec.name, exc.message)


TTY_GID = 5  # Debian's and busybox's group tty, where the container's files name none


def tty_gid(root: Path, count: int) -> int:
    """The gid of group ``tty`` in the container's own ``/etc/group`` (below ``count``, its
    mapped range), else ``TTY_GID``. Read without following a link the container made (its
    files are the guest's: ``etc`` or ``group`` could point anywhere on the host)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        top = os.open(root, flags | os.O_DIRECTORY)
        try:
            etc = os.open("etc", flags | os.O_DIRECTORY, dir_fd=top)
        finally:
            os.close(top)
        try:
            fd = os.open("group", flags, dir_fd=etc)
        finally:
            os.close(etc)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return TTY_GID
            text = os.read(fd, 1 << 20).decode(errors="replace")
        finally:
            os.close(fd)
    except OSError:
        return TTY_GID
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == "tty" and fields[2].isascii() \
                and fields[2].isdigit() and int(fields[2]) < count:
            return int(fields[2])
    return TTY_GID


@contextlib.contextmanager
def _readable_by_container(directory: Path, privileged: bool) -> Iterator[Path]:
    """The checkpoint, where an unprivileged container's restoring tasks can read it: some
    images are opened (through CRIU's directory fd) after a task entered its new user
    namespace, before its ids are mapped ("Unable to open timens-0.img: Permission
    denied"), so only the "other" bits count. Opened up only inside a fresh 0700 directory
    (nobody else on the host can reach it), and closed again afterwards."""
    if privileged:
        yield directory
        return
    private = directory.parent / f".{directory.name}.restoring"
    inside = private / "images"
    if private.exists():  # a restore that crashed in this window: its images come back
        if inside.exists() and not directory.exists():
            _modes(inside, 0o700, 0o600)
            inside.rename(directory)
        shutil.rmtree(private)
    private.mkdir(mode=0o700)
    directory.rename(inside)
    try:
        _modes(inside, 0o711, 0o644)
        yield inside
    finally:
        _modes(inside, 0o700, 0o600)
        inside.rename(directory)
        private.rmdir()


def _modes(directory: Path, for_dir: int, for_files: int) -> None:
    directory.chmod(for_dir)
    for path in directory.iterdir():
        if path.is_file() and not path.is_symlink():
            path.chmod(for_files)


def _restore_root(spec: InstanceSpec) -> Path | None:
    """An unprivileged container's root as its user namespace sees it: an idmapped mount of
    the loop mount, made by Corral (None: privileged, the loop mount itself)."""
    if spec.privileged:
        return None
    idmap = root_idmap()
    if idmap is None:
        raise HostFailure("root has no subordinate id range for the restored container")
    target = spec.run_dir / IDMAP_ROOT
    unmount(target)  # a crashed restore's
    idmount.mount_idmapped(spec.run_dir / "rootfs", target, idmap)
    return target


IDMAP_DISKS = "disks-idmap"
"""Where (in the run directory) the restore's idmapped views of the data disks are."""


def _restore_disks(spec: InstanceSpec) -> dict[Path, Path]:
    """An unprivileged container's data disks as its user namespace sees them, as the root
    (``_restore_root``): LXC's restore hands CRIU each ``lxc.mount.entry`` bind's source as
    it is (``--ext-mount-map``), without the entry's ``idmap=container``, so the restored
    tasks' open files on a plain bind fail ("Can't open file …: Permission denied"). The
    host's loop mount -> its idmapped mount ({} for a privileged container)."""
    if spec.privileged or not spec.data_disks:
        return {}
    idmap = root_idmap()
    if idmap is None:
        raise HostFailure("root has no subordinate id range for the restored container")
    made: dict[Path, Path] = {}
    for disk in spec.data_disks:
        source = data_mount(spec, disk)
        target = spec.run_dir / IDMAP_DISKS / disk.name
        unmount(target)  # a crashed restore's
        idmount.mount_idmapped(source, target, idmap)
        made[source] = target
    return made


def _release_idmapped(spec: InstanceSpec) -> None:
    """Remove the restore's idmapped mounts (root and data disks) from the host."""
    root = spec.run_dir / IDMAP_ROOT
    unmount(root)
    with contextlib.suppress(OSError):
        root.rmdir()
    disks = spec.run_dir / IDMAP_DISKS
    if disks.is_dir():
        for target in disks.iterdir():
            unmount(target)
            with contextlib.suppress(OSError):
                target.rmdir()
        with contextlib.suppress(OSError):
            disks.rmdir()


def _precreate_veths(spec: InstanceSpec) -> list[tuple[str, str, str]]:
    """The veth pairs of an unprivileged container's NICs, made here before its restore:
    CRIU's restored init, inside the container's user namespace, may not create a veth
    whose peer is in the host's namespace ("net: Can't restore link: … Operation not
    permitted"), but moves a pre-made one in (``external netdev[ethN]:<peer>``, through its
    privileged helper). CRIU puts the host end on its bridge (LXC's ``veth[…]@bridge``
    external). Each as
    (the container's name, the peer's name here, the host end)."""
    net = NetHost()
    made: list[tuple[str, str, str]] = []
    try:
        for nic in sorted(read_nics(spec.directory), key=lambda n: n.index):
            host_end, peer = nic.host_ifname, f"r{nic.host_ifname}"[:15]
            if net.exists(host_end):
                raise HostFailure(f"cannot restore '{spec.name}': a device {host_end} "
                                  "already exists here")
            net.add_veth(host_end, peer)
            made.append((nic.guest_ifname, peer, host_end))
            net.up(host_end)
    except HostFailure:
        for _guest, _peer, host_end in made:
            net.delete_link(host_end)
        raise
    return made


def _restore_config(text: str, spec: InstanceSpec, root: Path | None,
                    disks: dict[Path, Path] | None = None) -> str:
    """The configuration the restoring monitor reads: no console or ttys of its own (it has
    none after a restore and its poll loop would end on that, leaving the container without
    a monitor) and, unprivileged, the idmapped root in place of the loop mount plus its
    ``idmap=container`` (which LXC's restore ignores), and each data disk's bind made from
    its idmapped mount (``disks``: loop mount -> idmapped mount)."""
    lines = text.splitlines()
    if root is not None:
        plain = f"lxc.rootfs.path = dir:{spec.run_dir / 'rootfs'}"
        lines = [f"lxc.rootfs.path = dir:{root}" if line.strip() == plain else line
                 for line in lines if line.strip() != "lxc.rootfs.options = idmap=container"]
    for source, idmapped in (disks or {}).items():
        entry = f"lxc.mount.entry = {source} "
        lines = [f"lxc.mount.entry = {idmapped} "
                 + line.strip()[len(entry):].replace(",idmap=container", "")
                 if line.strip().startswith(entry) else line for line in lines]
    return "\n".join([*lines, "lxc.console.path = none", "lxc.tty.max = 0"]) + "\n"
