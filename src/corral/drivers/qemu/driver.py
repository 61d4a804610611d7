"""QemuDriver: the Driver Protocol for VMs.

Everything needed to find a running VM again lives under the instance directory: the pid
file and the QMP, console and agent sockets in ``run/``, the console log beside it. QEMU
daemonizes, so a VM outlives the process that started it; ``status`` re-adopts it from the
pid file and QMP.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from corral.domain.disks import CDROM_FILE
from corral.domain.errors import Conflict, HostFailure, InvalidInput, Unsupported
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
from corral.drivers.qemu import agent
from corral.drivers.qemu import resources as vm_resources
from corral.drivers.qemu.cmdline import (
    REPORT_ORDER,
    VmConfig,
    VmPaths,
    build_argv,
    kernel_append,
    tcg_buffer_mib,
)
from corral.drivers.qemu.console import SocketConsole, tail
from corral.drivers.qemu.disks import QemuDiskHotplug, vm_disks
from corral.drivers.qemu.nics import (
    append_nics,
    instance_nics,
    prepare_taps,
    remove_taps,
    vm_nics,
)
from corral.drivers.qemu.placement import place_while_starting
from corral.drivers.qemu.qmp import (
    Command,
    StateWatches,
    close_monitor,
    qmp,
    qmp_each,
    qmp_many,
)
from corral.host.cgroups import CgroupLayout, host_layout
from corral.host.cpu import tsc_khz
from corral.host.kvm import choose_accel
from corral.host.run import require_tool, run_while
from corral.host.spawn import Spawned
from corral.storage.images import build_root_disk
from corral.templates.image import TemplateImage

CONFIG = "vm.json"
CDROM = CDROM_FILE
NO_AGENT = "no-agent"
"""In ``run/`` while a VM without the Corral guest agent runs (a foreign image)."""
KERNEL_HEADROOM = 32 * 1024**2  # guest RAM beyond the kernel image it needs to boot
_PAUSED = {"paused", "suspended", "prelaunch", "inmigrate", "postmigrate", "save-vm"}


def _paths(spec: InstanceSpec) -> VmPaths:
    return VmPaths(directory=spec.directory, run=spec.run_dir)


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[-1].split()[0] != b"Z"


def _is_our_qemu(pid: int, paths: VmPaths) -> bool:
    """Guard against a recycled pid: the process must be QEMU using this VM's QMP socket."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(paths.qmp).encode() in cmdline


def firmware_boot(template: TemplateImage) -> bool:
    """Foreign images (and ISO installs) boot through SeaBIOS, not the template's kernel."""
    return str(template.metadata.get("vm", {}).get("boot", "kernel")) == "firmware"


_STATUS_QUERIES: list[Command] = [("query-status", None), ("query-chardev", None)]


def _running_status(paths: VmPaths, pid: int, said: list[Any]) -> RuntimeStatus:
    """A live QEMU's state from its answers to ``_STATUS_QUERIES``."""
    status, chardevs = said
    qemu_status = str(status.get("status", "unknown"))
    state = RuntimeState.SUSPENDED if qemu_status in _PAUSED else RuntimeState.RUNNING
    details = {"qemu_status": qemu_status}
    if not (paths.run / NO_AGENT).exists():
        details["agent"] = _agent_state(chardevs)
    return RuntimeStatus(state, pid, details=details)


def _agent_state(chardevs: list[dict[str, object]]) -> str:
    """"connected" once the guest agent has opened its virtio-serial port (QEMU's
    ``frontend-open`` of the port's chardev), "waiting" while the guest still boots."""
    for chardev in chardevs:
        if chardev.get("label") == "agent":
            return "connected" if chardev.get("frontend-open") else "waiting"
    return "waiting"


def _ended(paths: VmPaths) -> dict[str, str]:
    """A QEMU no longer running that left its pid file: it did not exit (QEMU removes the
    file when it quits, a guest power-off included, and Corral's stop removes it after a
    forced kill), so a signal or a crash ended it. QEMU daemonizes: Corral is not its parent
    and cannot read the signal. Nothing said for a pid file that is not there."""
    try:
        pid = paths.pidfile.read_text().strip()
    except OSError:
        return {}
    return {"ended": f"QEMU (pid {pid[:12]}) ended without shutting down "
                     f"(killed by a signal or crashed)"}


def has_agent(template: TemplateImage) -> bool:
    return bool(template.metadata.get("vm", {}).get("agent", not firmware_boot(template)))


def _host_kernel() -> Path | None:
    found = Path(f"/boot/vmlinuz-{os.uname().release}")
    return found if found.is_file() else None


class QemuDriver(QemuDiskHotplug):
    def __init__(self, accel: str | None = None, qemu: str | None = None) -> None:
        if accel not in (None, "kvm", "tcg"):
            raise InvalidInput(f"accelerator '{accel}' is not one of: kvm, tcg")
        self._accel = accel
        self._qemu = qemu
        self._hooks: Hooks | None = None
        self._watches = StateWatches()
        self._known: dict[str, RuntimeStatus] = {}
        """``statuses``: the last queried state per QMP socket (kept while no event came)."""
        self.launch_priority: Callable[[], int] = lambda: 1
        """The factor on a starting VM's CPU weight until QEMU is up (host policy
        ``vm_launch_priority``, wired by the daemon; 1: none)."""

    @property
    def kind(self) -> Kind:
        return Kind.VM

    def capabilities(self) -> Capabilities:
        return Capabilities(
            kind=Kind.VM, snapshots=True, nic_hotplug=True,
            notes=("exec and graceful stop need the Corral guest agent in the template",
                   "NIC hot-plug needs a q35 or pc machine (microvm: at the next start)"),
        )

    def hooks(self) -> Hooks:
        if self._hooks is None:
            from corral.drivers.qemu.hooks import qemu_hooks  # it imports this module

            self._hooks = qemu_hooks(self)
        return self._hooks

    def _binary(self) -> str:
        if self._qemu is None:
            self._qemu = require_tool("qemu-system-x86_64", "qemu-system-x86")
        return self._qemu

    def accel_for(self, template: TemplateImage) -> str:
        if self._accel:
            return self._accel
        kernel = template.kernel if template.kernel.exists() else _host_kernel()
        return choose_accel(kernel).accel if kernel is not None else "tcg"

    # --- lifecycle -------------------------------------------------------------------------

    def create(self, spec: InstanceSpec, template: TemplateImage, progress: Progress) -> None:
        if not template.kernel.exists() and not firmware_boot(template):
            raise InvalidInput(f"template '{template.name}' has no kernel; it cannot boot a VM")
        owns_disk = spec.root_disk is None  # else storage made it (a clone of a base image)
        if owns_disk and spec.disk_path.exists():
            raise Conflict(f"'{spec.name}' already has a disk at '{spec.disk_path}'")
        made_dir = not spec.directory.exists()
        spec.directory.mkdir(parents=True, exist_ok=True)
        try:
            if owns_disk:
                progress(0.0, "root disk")
                build_root_disk(template.rootfs, spec.disk_path, spec.resources.disk)
            progress(0.9, "configuration")
            config = {"template": template.name, "template_version": template.version}
            (spec.directory / CONFIG).write_text(json.dumps(config) + "\n")
            progress(1.0, "created")
        except BaseException:
            if owns_disk:
                spec.disk_path.unlink(missing_ok=True)
            (spec.directory / CONFIG).unlink(missing_ok=True)
            if made_dir:
                shutil.rmtree(spec.directory, ignore_errors=True)
            raise

    def config(self, spec: InstanceSpec, template: TemplateImage) -> VmConfig:
        res = spec.resources
        firmware = firmware_boot(template)
        needed = (0 if firmware else template.kernel.stat().st_size) + KERNEL_HEADROOM
        if res.memory < needed:
            raise InvalidInput(
                f"memory {res.memory // 1024**2} MiB is too little to boot template "
                f"'{template.name}': its kernel needs at least {-(-needed // 1024**2)} MiB"
            )
        initrd = template.initrd if template.initrd.exists() else None
        machine = str(template.metadata.get("vm", {}).get("machine", "microvm"))
        accel = self.accel_for(template)
        vm_meta = template.metadata.get("vm", {})
        tcg = accel.startswith("tcg")
        append = kernel_append(template.vm_cmdline, spec.name, tsc_khz(), tcg=tcg,
                               report_order=REPORT_ORDER)
        append = " ".join([append, *vm_resources.kernel_maxcpus(res, machine)])
        nics = instance_nics(spec)
        append = append_nics(append, nics)
        return VmConfig(
            name=spec.name,
            cpus=res.cpus,
            memory=res.memory,
            accel=accel,
            kernel=template.kernel,
            initrd=initrd,
            append=append,
            disk=spec.disk_path,
            paths=_paths(spec),
            machine=machine,
            max_cpus=vm_resources.max_cpus(res),
            nics=vm_nics(nics),
            data_disks=vm_disks(spec),
            firmware=firmware,
            cdrom=cdrom if firmware and (cdrom := spec.directory / CDROM).is_file() else None,
            vnc=firmware,
            free_page_reporting=True,
            tb_size=tcg_buffer_mib(res.memory, int(vm_meta.get("tb_size_mib") or 0))
            if tcg else 0,
        )

    def start(
        self, spec: InstanceSpec, template: TemplateImage, *, paused: bool = False,
        boot_memory: int | None = None, attached: Sequence[str] | None = None,
    ) -> None:
        """Start QEMU; ``paused``: with the vCPUs stopped until QMP ``cont`` (the guest has
        not run a single instruction: a memory snapshot can be loaded into it);
        ``boot_memory``: QEMU's ``-m`` instead of the spec's memory (a saved state's RAM
        size, which a live ``set memory=`` ballooned below); ``attached``: only these data
        disks (a saved state's devices must match)."""
        paths = _paths(spec)
        if self._pid(paths) is not None:
            raise Conflict(f"'{spec.name}' is already running")
        if not spec.disk_path.exists():
            raise InvalidInput(f"'{spec.name}' has no disk at '{spec.disk_path}'; create it")
        cfg = dataclasses.replace(self.config(spec, template), paused=paused)
        if boot_memory is not None:
            cfg = dataclasses.replace(cfg, memory=int(boot_memory))
        if attached is not None:
            cfg = dataclasses.replace(cfg, data_disks=tuple(
                d for d in cfg.data_disks if d.name in attached))
        if paths.run.exists():  # left by a crash (a stop removes it)
            self._cleanup_runtime(paths)
        paths.run.mkdir(parents=True, exist_ok=True)
        try:
            prepare_taps(instance_nics(spec))
            if not has_agent(template):
                (paths.run / NO_AGENT).write_text("this VM boots a foreign image\n")
            # the persisted resources: cgroup (CPU cap/weight/pin) first, QEMU moved into it
            # while it initialises (placement.py), IO throttling once it answers QMP; the
            # cgroup layout is read then too, off the path to QEMU's exec
            layouts: list[CgroupLayout] = []
            priority = self.launch_priority()

            def place(launcher: Spawned) -> int | None:
                layouts.append(host_layout())
                return place_while_starting(
                    launcher, paths.pidfile, lambda pid: _is_our_qemu(pid, paths),
                    prepare=lambda: vm_resources.launching(spec, paths, layouts[0], priority),
                    move=lambda pid: vm_resources.move(spec, layouts[0], pid))

            _, placed = run_while(build_argv(self._binary(), cfg), place, timeout=60)
            pid = placed or self._pid(paths)
            if pid is None:
                raise HostFailure(f"QEMU for '{spec.name}' exited right after starting")
            vm_resources.started(spec, paths, layouts[0], pid, placed=placed is not None,
                                 priority=priority)
        except BaseException:
            self._kill(paths)
            self._cleanup_runtime(paths)
            vm_resources.unplace_after_failure(spec, host_layout())
            remove_taps(instance_nics(spec))
            raise

    def stop(self, spec: InstanceSpec, *, force: bool, timeout: float) -> None:
        # the VM's (now empty) cgroup stays until delete: the next start only rewrites its
        # limits instead of making four groups again (placement.py)
        self._stop(spec, force=force, timeout=timeout)

    def _stop(self, spec: InstanceSpec, *, force: bool, timeout: float) -> None:
        paths = _paths(spec)
        pid = self._pid(paths)
        if pid is None:
            self._cleanup_runtime(paths)
            remove_taps(instance_nics(spec))
            return
        deadline = time.monotonic() + max(0.0, timeout)
        if not force:
            self._request_poweroff(paths, deadline)
            if self._wait_gone(pid, deadline):
                self._cleanup_runtime(paths)
                remove_taps(instance_nics(spec))
                return
        self._kill(paths)
        self._cleanup_runtime(paths)
        remove_taps(instance_nics(spec))

    def _request_poweroff(self, paths: VmPaths, deadline: float) -> None:
        """Ask the guest to power off: resume it if paused, tell its agent, press the button."""
        with contextlib.suppress(HostFailure):
            if qmp(paths.qmp, "query-status").get("status") in _PAUSED:
                qmp(paths.qmp, "cont")
        budget = min(3.0, max(0.1, deadline - time.monotonic()))
        if (paths.run / NO_AGENT).exists():
            budget = 0.0
        try:
            if budget <= 0:
                raise HostFailure("no guest agent")
            rid = agent.new_id()
            client = agent.AgentClient(paths.agent, paths.agent_lock)
            client.call(agent.encode_simple("POWEROFF", rid), rid, budget)
            return
        except HostFailure:
            pass
        with contextlib.suppress(HostFailure):
            qmp(paths.qmp, "system_powerdown")

    def _wait_gone(self, pid: int, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if not _alive(pid):
                return True
            time.sleep(0.05)
        return not _alive(pid)

    def _kill(self, paths: VmPaths) -> None:
        """QMP quit, then SIGKILL; returns once the process is gone."""
        pid = self._pid(paths)
        if pid is None:
            return
        with contextlib.suppress(HostFailure):
            qmp(paths.qmp, "quit", timeout=2.0)
        if self._wait_gone(pid, time.monotonic() + 3.0):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        if not self._wait_gone(pid, time.monotonic() + 10.0):
            raise HostFailure(f"QEMU pid {pid} did not exit after SIGKILL")

    def _cleanup_runtime(self, paths: VmPaths) -> None:
        close_monitor(paths.qmp)  # QEMU is gone: hang up its QMP session
        live = paths.run / vm_resources.LIVE_FILE
        for path in (*paths.sockets(), paths.pidfile, paths.agent_lock, live,
                     paths.run / NO_AGENT):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            paths.run.rmdir()

    def suspend(self, spec: InstanceSpec) -> None:
        self._running_pid(spec)
        qmp(_paths(spec).qmp, "stop")

    def resume(self, spec: InstanceSpec) -> None:
        self._running_pid(spec)
        qmp(_paths(spec).qmp, "cont")

    def delete(self, spec: InstanceSpec) -> None:
        paths = _paths(spec)
        if self._pid(paths) is not None:
            raise Conflict(f"cannot delete '{spec.name}': it is running; stop it first")
        self._cleanup_runtime(paths)
        remove_taps(instance_nics(spec))
        vm_resources.unplace(spec, host_layout())
        owned = [spec.disk_path] if spec.root_disk is None else []  # pool disks: storage's
        for path in (*owned, paths.console_log, spec.directory / CONFIG):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # other layers may keep files there too
            spec.directory.rmdir()

    # --- observation -----------------------------------------------------------------------

    def _pid(self, paths: VmPaths) -> int | None:
        try:
            pid = int(paths.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        if _alive(pid) and _is_our_qemu(pid, paths):
            return pid
        return None

    def _running_pid(self, spec: InstanceSpec) -> int:
        pid = self._pid(_paths(spec))
        if pid is None:
            raise Conflict(f"'{spec.name}' is not running")
        return pid

    def status(self, spec: InstanceSpec) -> RuntimeStatus:
        return self._status(spec, 5.0)

    def _status(self, spec: InstanceSpec, qmp_timeout: float) -> RuntimeStatus:
        paths = _paths(spec)
        pid = self._pid(paths)
        if pid is None:
            return self._not_running(spec)
        try:
            said = qmp_many(paths.qmp, _STATUS_QUERIES, qmp_timeout)
        except HostFailure as exc:
            return RuntimeStatus(RuntimeState.RUNNING, pid, details={"qmp": exc.message})
        return _running_status(paths, pid, said)

    @staticmethod
    def _not_running(spec: InstanceSpec) -> RuntimeStatus:
        if spec.disk_path.exists():
            return RuntimeStatus(RuntimeState.STOPPED, details=_ended(_paths(spec)))
        return RuntimeStatus(RuntimeState.MISSING)

    def statuses(self, specs: Sequence[InstanceSpec]) -> dict[int, RuntimeStatus]:
        # The pidfile and /proc say whether each QEMU lives. A live one's run state is the
        # one last queried over its QMP session while QEMU sent no state event since
        # (qmp.StateWatches: STOP, RESUME, SHUTDOWN, VSERPORT_CHANGE … -- a pause or an
        # agent change made by anyone); else it is queried, every such VM at once
        # (qmp_each), no process. A QEMU that does not answer within a second is reported
        # running (details say why, and it is asked again next time) rather than holding
        # up the list of every other instance.
        found: dict[int, RuntimeStatus] = {}
        live: list[tuple[InstanceSpec, VmPaths, int]] = []
        for spec in specs:
            with contextlib.suppress(Exception):
                paths = _paths(spec)
                pid = self._pid(paths)
                if pid is None:
                    self._known.pop(str(paths.qmp), None)
                    found[spec.id] = self._not_running(spec)
                else:
                    live.append((spec, paths, pid))
        changed = self._watches.changed([paths.qmp for _, paths, _ in live])
        ask = []
        for (spec, paths, pid), moved in zip(live, changed, strict=True):
            known = self._known.get(str(paths.qmp))
            if not moved and known is not None and known.pid == pid:
                found[spec.id] = known
            else:
                ask.append((spec, paths, pid))
        self._watches.watch([paths.qmp for _, paths, _ in ask])
        answers = qmp_each([paths.qmp for _, paths, _ in ask], _STATUS_QUERIES, 1.0)
        for (spec, paths, pid), said in zip(ask, answers, strict=True):
            with contextlib.suppress(Exception):
                if isinstance(said, HostFailure):
                    self._watches.forget(paths.qmp)  # ask again next time
                    found[spec.id] = RuntimeStatus(RuntimeState.RUNNING, pid,
                                                   details={"qmp": said.message})
                else:
                    found[spec.id] = self._known[str(paths.qmp)] = _running_status(
                        paths, pid, said)
        return found

    def exec(
        self, spec: InstanceSpec, argv: list[str], timeout: float | None, stdin: bytes = b""
    ) -> ExecResult:
        self._running_pid(spec)
        paths = _paths(spec)
        if (paths.run / NO_AGENT).exists():
            raise Unsupported(
                f"'{spec.name}' runs a foreign image without the Corral guest agent, so "
                f"Corral cannot run commands in it; use its console (corral console "
                f"{spec.name} --vnc) or the network"
            )
        rid = agent.new_id()
        request = agent.encode_exec(rid, argv, timeout, stdin)
        wait = None if timeout is None else timeout + agent.EXEC_GRACE
        reply = agent.AgentClient(paths.agent, paths.agent_lock).call(request, rid, wait)
        if reply.verb == "ERROR":
            raise HostFailure(f"the guest agent refused the command: {reply.message}")
        if reply.verb != "RESULT":
            raise HostFailure(f"the guest agent answered {reply.verb} to exec")
        return ExecResult(reply.exit_code, reply.stdout, reply.stderr)

    def open_console(self, spec: InstanceSpec) -> ConsoleStream:
        self._running_pid(spec)
        return SocketConsole(_paths(spec).console)

    def console_log(self, spec: InstanceSpec, limit: int = 65536) -> bytes:
        return tail(_paths(spec).console_log, limit)

    # --- resources -------------------------------------------------------------------------

    def apply_resources(
        self, spec: InstanceSpec, old: Resources, new: Resources
    ) -> AppliedChange:
        paths = _paths(spec)
        running = self._pid(paths) is not None
        return vm_resources.apply(spec, paths, host_layout(), old, new, running)

    def stats(self, spec: InstanceSpec) -> InstanceStats:
        paths = _paths(spec)
        return vm_resources.stats(spec, paths, host_layout(), self._pid(paths))

    def adopted(self, spec: InstanceSpec) -> None:
        """The VM's own CPU weight written again: a daemon that died between a launch and
        "runtime up" left its group at the launch priority's boosted weight."""
        vm_resources.restore_weight(spec, host_layout())

    def cpu_times(self, specs: Sequence[InstanceSpec]) -> dict[int, int]:
        layout, found = host_layout(), {}
        for spec in specs:
            with contextlib.suppress(Exception):
                pid = self._pid(_paths(spec))
                if pid is not None:
                    found[spec.id] = vm_resources.cpu_ns(spec, layout, pid)
        return found

    def stats_many(self, specs: Sequence[InstanceSpec]) -> dict[int, InstanceStats]:
        # every live VM's QMP questions at once (qmp_each), not one VM after another
        layout, found = host_layout(), {}
        known: list[tuple[InstanceSpec, VmPaths, int | None]] = []
        for spec in specs:
            paths = _paths(spec)
            with contextlib.suppress(Exception):
                known.append((spec, paths, self._pid(paths)))
        live = [(spec, paths, pid) for spec, paths, pid in known if pid is not None]
        answers = dict(zip((spec.id for spec, _, _ in live), qmp_each(
            [paths.qmp for _, paths, _ in live], vm_resources.STATS_QUERIES, 5.0),
            strict=True))
        for spec, paths, pid in known:
            with contextlib.suppress(Exception):
                found[spec.id] = vm_resources.stats(spec, paths, layout, pid,
                                                    answers.get(spec.id))
        return found
