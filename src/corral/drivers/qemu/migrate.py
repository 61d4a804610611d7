"""Live migration of a VM without shared storage, QEMU's side.

Target: QEMU starts with ``-incoming defer -S`` (paused, waiting), serves every disk — the
root disk and each data disk, empty — over one NBD server (``nbd-server-start`` + one
writable ``block-export-add`` per disk, named after the disk) and listens for the RAM stream
(``migrate-incoming``). Source: per disk a ``blockdev-add`` of the target's export and a
``blockdev-mirror`` in write-blocking mode (every guest write lands on both sides once
READY); when every mirror is READY, one ``migrate`` (RAM pre-copy under a bandwidth and a
downtime limit). When QEMU reports the migration completed the source is stopped; every
mirror is cancelled (for a READY mirror that is a clean completion without pivot), the NBD
nodes deleted, and only then does the target drop its exports and ``cont``. Until that commit
the source can always ``cont`` again: that is the rollback, for all disks at once.

All QMP goes through the VM's one session (qmp.py); the source waits for its events
(``STOP``, ``MIGRATION``, ``BLOCK_JOB_*``) on its own subscription, so ``corral stats`` or a
``status`` during a migration still get their answers from the same monitor.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.domain.errors import HostFailure
from corral.domain.instance import InstanceSpec
from corral.drivers.migration import StreamTls
from corral.drivers.qemu import resources as vm_resources
from corral.drivers.qemu.cmdline import VmDisk, VmPaths, build_argv
from corral.drivers.qemu.driver import QemuDriver
from corral.drivers.qemu.qmp import Monitor, Subscription, monitor
from corral.drivers.qemu.tlscreds import CREDS_ID, add_creds, drop_creds
from corral.host.cgroups import host_layout
from corral.host.run import run
from corral.templates.image import TemplateImage

ROOT = "root"  # the root disk's name: its drive id, and its NBD export
MIRROR_JOB = "corral-migrate-mirror-"
NBD_NODE = "corral-migrate-nbd-"
EXPORT_ID = "corral-migrate-export-"
UNLIMITED = 1 << 40  # bytes/s: QEMU's max-bandwidth when no limit is asked for
SOURCE_EVENTS = ("STOP", "MIGRATION", "BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED",
                 "BLOCK_JOB_CANCELLED", "BLOCK_JOB_ERROR")
_MIGRATING = ("active", "setup", "cancelling", "device", "pre-switchover", "wait-unplug")


def event_time(event: dict[str, Any]) -> float:
    stamp = event.get("timestamp", {})
    return float(stamp.get("seconds", 0)) + float(stamp.get("microseconds", 0)) / 1e6


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _uri_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _paths(spec: InstanceSpec) -> VmPaths:
    return VmPaths(directory=spec.directory, run=spec.run_dir)


def _qmp(spec: InstanceSpec) -> Monitor:
    return monitor(_paths(spec).qmp)


def disk_names(spec: InstanceSpec, attached: Sequence[str] | None = None) -> list[str]:
    """The disks that move live: the root disk, then the data disks QEMU has (``attached``;
    None: all of them)."""
    return [ROOT, *(d.name for d in spec.data_disks if attached is None or d.name in attached)]


def _node(disk: str) -> str:
    """The QMP name of a disk on the VM: the root drive's id, a data disk's blockdev node."""
    return ROOT if disk == ROOT else VmDisk(disk, Path(), 0).node


def attached_disks(spec: InstanceSpec) -> list[str]:
    """The data disks the running QEMU has. One added to a running microvm VM waits for the
    next start: QEMU does not have it (nor does the guest write it), so it moves as a file
    and the target's QEMU starts without it, as the source's did."""
    nodes = {str(d.get("inserted", {}).get("node-name", ""))
             for d in _qmp(spec).execute("query-block") if d.get("inserted")}
    return [d.name for d in spec.data_disks if _node(d.name) in nodes]


# --- target ------------------------------------------------------------------------------

@dataclass(frozen=True)
class IncomingEndpoints:
    nbd_host: str
    nbd_port: int
    exports: dict[str, str]  # disk name -> NBD export name
    migrate_uri: str

    @property
    def export(self) -> str:
        return self.exports[ROOT]


def start_incoming(driver: QemuDriver, spec: InstanceSpec, template: TemplateImage,
                   listen_host: str, boot_memory: int | None = None,
                   attached: Sequence[str] | None = None,
                   tls: StreamTls | None = None) -> IncomingEndpoints:
    """Start the paused, waiting QEMU on the target with its disks exported over NBD, in its
    cgroup with the instance's limits. ``boot_memory``: the source QEMU's ``-m`` (a live
    ``set memory=`` ballooned below it; the RAM layout must match); ``attached``: the data
    disks the source's QEMU has (the devices must match; None: all); ``tls``: serve both
    streams over TLS to the peer it pins only (None: plain TCP, for bench/ comparisons)."""
    if driver.status(spec).pid is not None:
        raise HostFailure(f"'{spec.name}' already has a QEMU on this host")
    cfg = driver.config(spec, template)
    if boot_memory is not None:
        cfg = dataclasses.replace(cfg, memory=boot_memory)
    if attached is not None:
        cfg = dataclasses.replace(cfg, data_disks=tuple(
            d for d in cfg.data_disks if d.name in attached))
    paths = _paths(spec)
    paths.run.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(ImportError):  # NIC taps, where the driver has NICs
        from corral.drivers.qemu.nics import instance_nics, prepare_taps

        prepare_taps(instance_nics(spec))
    argv = [*build_argv(driver._binary(), cfg), "-incoming", "defer", "-S"]
    run(argv, timeout=60)
    pid = driver.status(spec).pid
    if pid is None:
        raise HostFailure(f"the incoming QEMU for '{spec.name}' exited right after starting")
    vm_resources.arrived(spec, paths, host_layout(), pid, cfg.memory)
    nbd_port, migrate_port = free_port(listen_host), free_port(listen_host)
    session = _qmp(spec)
    root = _root_node(session)
    server: dict[str, Any] = {
        "addr": {"type": "inet", "data": {"host": listen_host, "port": str(nbd_port)}},
    }
    if tls is not None:
        add_creds(session, paths.run, tls, "server")
        server["tls-creds"] = CREDS_ID
        session.execute("migrate-set-parameters", {"tls-creds": CREDS_ID})
    session.execute("nbd-server-start", server)
    exports = {disk: disk for disk in disk_names(spec, attached)}
    session.run([("block-export-add", {
        "type": "nbd", "id": EXPORT_ID + disk, "name": name, "writable": True,
        "node-name": root if disk == ROOT else _node(disk),
    }) for disk, name in exports.items()])
    uri = f"tcp:{_uri_host(listen_host)}:{migrate_port}"
    session.execute("migrate-incoming", {"uri": uri})
    return IncomingEndpoints(listen_host, nbd_port, exports, uri)


def _root_node(session: Monitor) -> str:
    for device in session.execute("query-block"):
        if device.get("device") == ROOT and device.get("inserted"):
            return str(device["inserted"]["node-name"])
    raise HostFailure("the incoming QEMU has no root drive")


def finish_incoming(spec: InstanceSpec, attached: Sequence[str] | None = None,
                    timeout: float = 30.0) -> float:
    """Once the RAM stream is complete: drop the exports and run. Returns when it ran."""
    session = _qmp(spec)
    deadline = time.monotonic() + timeout
    while True:
        status = session.execute("query-status")["status"]
        if status != "inmigrate":
            break
        if time.monotonic() > deadline:
            raise HostFailure("the incoming migration did not complete on the target")
        time.sleep(0.002)
    if status not in ("paused", "postmigrate", "prelaunch"):
        raise HostFailure(f"the incoming QEMU is '{status}', not ready to run")
    with session.subscribe(["RESUME"]) as resumes:
        session.run([
            *(("block-export-del", {"id": EXPORT_ID + disk, "mode": "hard"})
              for disk in disk_names(spec, attached)),
            ("nbd-server-stop", None),
            ("cont", None),
        ])
        return _resumed_at(resumes)


def _resumed_at(resumes: Subscription) -> float:
    """The wall clock of the RESUME event ``cont`` caused: QEMU's own timestamp, as the
    source's STOP is, so the downtime is measured by QEMU's clock at both ends (and the same
    way bench/migrate.py measures its raw side). Now, if the event does not come."""
    deadline = time.monotonic() + 1.0
    while (left := deadline - time.monotonic()) > 0:
        event = resumes.get(left)
        if event is None:
            break
        if event.get("event") == "RESUME":
            return event_time(event)
    return time.time()


def resumed_incoming(spec: InstanceSpec) -> None:
    """After the commit's ``cont`` (outside the downtime): IO throttling and balloon, and
    the migration's TLS credentials go."""
    vm_resources.resumed(spec, _paths(spec))
    session = _qmp(spec)
    _clear_tls(session)
    drop_creds(session, _paths(spec).run)


def _clear_tls(session: Monitor) -> None:
    """Unset the migration's TLS parameters (they hold the credentials object)."""
    with contextlib.suppress(HostFailure):
        session.execute("migrate-set-parameters", {"tls-creds": "", "tls-hostname": ""})


def source_boot_memory(spec: InstanceSpec) -> int:
    return vm_resources.booted_memory(_paths(spec))


# --- source ------------------------------------------------------------------------------

@dataclass
class LiveResult:
    stopped_at: float = 0.0  # wall clock of the source's STOP event
    qemu_downtime_ms: int | None = None
    disk_bytes: int = 0
    ram_bytes: int = 0
    ram_total: int = 0
    setup_ms: int | None = None
    log: list[str] = field(default_factory=list)


Report = Callable[[float, str], None]  # fraction of this step, phase text; may raise Cancelled


class LiveSource:
    """Drives the source QEMU; ``rollback`` undoes whatever was done, in any phase."""

    def __init__(self, spec: InstanceSpec, attached: Sequence[str] | None = None,
                 tls: StreamTls | None = None) -> None:
        self.disks = disk_names(spec, attached)
        self.tls = tls  # None: plain TCP (bench/ comparisons only)
        self.run_dir = _paths(spec).run
        self.session = _qmp(spec)
        self.events: Subscription = self.session.subscribe(SOURCE_EVENTS)
        self.result = LiveResult()
        self._nbd_added: list[str] = []
        self._mirrors: list[str] = []
        self._migrating = False

    def close(self) -> None:
        self.events.close()

    def mirror(self, host: str, port: int, exports: dict[str, str], bandwidth: int | None,
               report: Report) -> None:
        """One mirror per disk into the target's export of it; returns when all are READY."""
        missing = [d for d in self.disks if d not in exports]
        if missing:
            raise HostFailure(f"the target exports no disk {', '.join(missing)} "
                              "(is it an older Corral?)")
        s = self.session
        s.execute("migrate-set-capabilities", {"capabilities": [
            {"capability": "events", "state": True}]})
        del bandwidth  # the limit is for the RAM stream; the mirror skips holes anyway
        secure: dict[str, str] = {}
        if self.tls is not None:
            add_creds(s, self.run_dir, self.tls, "client")
            secure = {"tls-creds": CREDS_ID, "tls-hostname": self.tls.peer_name}
        for disk in self.disks:
            s.execute("blockdev-add", {
                "driver": "nbd", "node-name": NBD_NODE + disk, "export": exports[disk],
                "server": {"type": "inet", "host": host, "port": str(port)}, **secure,
            })
            self._nbd_added.append(disk)
            s.execute("blockdev-mirror", {
                "job-id": MIRROR_JOB + disk, "device": _node(disk), "target": NBD_NODE + disk,
                "sync": "full", "copy-mode": "write-blocking", "auto-dismiss": True,
            })
            self._mirrors.append(disk)
        while True:
            jobs = self._jobs()
            gone = [d for d in self.disks if d not in jobs]
            if gone:
                raise HostFailure(f"the mirror of disk {gone[0]} ended before it was in sync "
                                  "(the target's NBD export went away?)")
            for disk, job in jobs.items():
                if job.get("status") in ("aborting", "concluded", "null"):
                    raise HostFailure(f"the mirror of disk {disk} failed: "
                                      f"{job.get('error', 'aborted')}")
            done = sum(int(j.get("offset", 0)) for j in jobs.values())
            total = sum(int(j.get("len", 0)) for j in jobs.values()) or 1
            self.result.disk_bytes = done
            what = "disk mirror" if len(jobs) == 1 else f"{len(jobs)} disk mirrors"
            report(done / total, f"{what} {_mib(done)}/{_mib(total)} MiB")
            if all(j.get("ready") for j in jobs.values()):
                return
            self._next_event(0.1)

    def _jobs(self) -> dict[str, dict[str, Any]]:
        """This migration's mirror jobs QEMU still has, by disk."""
        ours = {MIRROR_JOB + d: d for d in self._mirrors}
        return {ours[j["device"]]: dict(j) for j in self.session.execute("query-block-jobs")
                if j.get("device") in ours}

    def _next_event(self, timeout: float) -> dict[str, Any] | None:
        event = self.events.get(timeout)
        if event is not None and event.get("event") == "STOP":
            self.result.stopped_at = event_time(event)
        return event

    def migrate(self, uri: str, bandwidth: int | None, downtime_ms: int,
                report: Report) -> None:
        s = self.session
        params: dict[str, Any] = {
            "downtime-limit": downtime_ms, "max-bandwidth": bandwidth or UNLIMITED,
        }
        if self.tls is not None:
            params.update({"tls-creds": CREDS_ID, "tls-hostname": self.tls.peer_name})
        s.execute("migrate-set-parameters", params)
        s.execute("migrate", {"uri": uri})
        self._migrating = True
        last_poll = 0.0
        while True:
            event = self._next_event(0.05)
            if event is not None and event.get("event") == "MIGRATION":
                status = event.get("data", {}).get("status")
                if status == "completed":
                    break
                if status in ("failed", "cancelled"):
                    raise HostFailure(f"the RAM migration {status}: {self._error()}")
            now = time.monotonic()
            if now - last_poll >= 0.2:
                last_poll = now
                info = s.execute("query-migrate")
                status = info.get("status")
                ram = info.get("ram", {})
                self.result.ram_bytes = int(ram.get("transferred", 0))
                total = int(ram.get("total", 0)) or 1
                remaining = int(ram.get("remaining", total))
                if status == "completed":
                    break
                if status in ("failed", "cancelled"):
                    raise HostFailure(f"the RAM migration {status}: "
                                      f"{info.get('error-desc', 'no reason given')}")
                report(min(1.0, (total - remaining) / total),
                       f"RAM pre-copy {_mib(self.result.ram_bytes)} MiB sent, "
                       f"{_mib(remaining)} MiB dirty")
        info = s.execute("query-migrate")
        self.result.qemu_downtime_ms = info.get("downtime")
        self.result.setup_ms = info.get("setup-time")
        self.result.ram_bytes = int(info.get("ram", {}).get("transferred", 0))
        self.result.ram_total = int(info.get("ram", {}).get("total", 0))
        if not self.result.stopped_at:  # the STOP event came with or before the last poll
            deadline = time.monotonic() + 1.0
            while not self.result.stopped_at and time.monotonic() < deadline:
                self._next_event(0.05)
        self._migrating = False

    def _error(self) -> str:
        with contextlib.suppress(HostFailure):
            return str(self.session.execute("query-migrate").get("error-desc", "no reason"))
        return "no reason given"

    def release_disk(self) -> None:
        """After the switch-over: end every mirror (no pivot) and drop the NBD clients."""
        self._end_mirrors(force=False)
        self._del_nbd()
        self._drop_tls()

    def _drop_tls(self) -> None:
        _clear_tls(self.session)
        drop_creds(self.session, self.run_dir)

    def _end_mirrors(self, force: bool) -> None:
        if not self._mirrors:
            return
        with contextlib.suppress(HostFailure):
            self.session.run([("block-job-cancel", {"device": MIRROR_JOB + d, "force": force})
                              for d in self._jobs()])
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            try:
                if not self._jobs():
                    break
            except HostFailure:
                break
            self._next_event(0.02)  # a BLOCK_JOB_COMPLETED/CANCELLED ends the wait early
        self._mirrors = []

    def _del_nbd(self) -> None:
        for disk in self._nbd_added:
            with contextlib.suppress(HostFailure):
                self.session.execute("blockdev-del", {"node-name": NBD_NODE + disk})
        self._nbd_added = []

    def rollback(self, resume: bool) -> list[str]:
        """Undo every step; ``resume``: the guest ran before, make it run again."""
        problems: list[str] = []
        if self._migrating:
            with contextlib.suppress(HostFailure):
                self.session.execute("migrate_cancel")
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline:
                try:
                    status = self.session.execute("query-migrate").get("status")
                except HostFailure:
                    break
                if status not in _MIGRATING:
                    break
                self._next_event(0.02)
            self._migrating = False
        self._end_mirrors(force=True)
        self._del_nbd()
        self._drop_tls()
        if resume:
            try:
                if self.session.execute("query-status")["status"] != "running":
                    self.session.execute("cont")
            except HostFailure as exc:
                problems.append(f"could not resume the source guest: {exc.message}")
        return problems


def recover_source(spec: InstanceSpec, resume: bool) -> list[str]:
    """After a corrald restart: undo a half-done migration the dead daemon left in QEMU."""
    try:
        source = LiveSource(spec)
    except HostFailure as exc:
        return [f"the source QEMU is not reachable: {exc.message}"]
    try:
        source._mirrors = list(source.disks)
        source._nbd_added = list(source.disks)
        source._migrating = True
        return source.rollback(resume)
    finally:
        source.close()


def _mib(value: int) -> str:
    return f"{value / 1024**2:.1f}"
