"""Live migration of a VM without shared storage, QEMU's side.

Target: QEMU starts with ``-incoming defer -S`` (paused, waiting), serves its empty root disk
over NBD (``nbd-server-start`` + ``block-export-add``, writable) and listens for the RAM
stream (``migrate-incoming``). Source: ``blockdev-add`` of the target's export, a
``blockdev-mirror`` of the root disk in write-blocking mode (every guest write lands on both
sides once READY), then ``migrate`` (RAM pre-copy under a bandwidth and a downtime limit).
When QEMU reports the migration completed the source is stopped; the mirror is cancelled
(for a READY mirror that is a clean completion without pivot), the NBD node deleted, and only
then does the target drop its export and ``cont``. Until that commit the source can always
``cont`` again: that is the rollback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from qemu.qmp import EventListener, QMPClient

from corral.domain.errors import HostFailure
from corral.domain.instance import InstanceSpec
from corral.drivers.qemu import resources as vm_resources
from corral.drivers.qemu.cmdline import VmPaths, build_argv
from corral.drivers.qemu.driver import QemuDriver
from corral.drivers.qemu.qmp import qmp
from corral.host.cgroups import read_layout
from corral.host.run import run
from corral.templates.image import TemplateImage

T = TypeVar("T")
MIRROR_JOB = "corral-migrate-mirror"
NBD_NODE = "corral-migrate-nbd"
EXPORT_ID = "corral-migrate-export"
EXPORT_NAME = "root"
ROOT_DEVICE = "root"
UNLIMITED = 1 << 40  # bytes/s: QEMU's max-bandwidth when no limit is asked for


class QmpSession:
    """A persistent QMP connection on its own event-loop thread; events are kept in order."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="qmp-session")
        self._thread.start()
        self._client = QMPClient("corral-migrate")
        self._events = EventListener()
        self._client.register_listener(self._events)
        self.path = path
        try:
            self._call(self._client.connect(str(path)), timeout)
        except BaseException:
            self.close()
            raise

    def _call(self, coro: Any, timeout: float) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(coro, timeout), self._loop)
        try:
            return future.result(timeout + 1.0)
        except (TimeoutError, OSError, EOFError) as exc:
            raise HostFailure(f"QMP at '{self.path}' unreachable: "
                              f"{exc or type(exc).__name__}") from exc
        except HostFailure:
            raise
        except Exception as exc:
            raise HostFailure(f"QMP: {exc}") from exc

    def execute(self, command: str, arguments: dict[str, Any] | None = None,
                timeout: float = 10.0) -> Any:
        try:
            return self._call(self._client.execute(command, arguments), timeout)
        except HostFailure as exc:
            raise HostFailure(f"QMP {command} failed: {exc.message}") from exc

    def event(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or None after ``timeout`` seconds."""
        async def get() -> Any:
            try:
                return await asyncio.wait_for(self._events.get(), timeout)
            except TimeoutError:
                return None

        found = self._call(get(), timeout + 5.0)
        return dict(found) if found is not None else None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._client.disconnect(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        with contextlib.suppress(Exception):
            self._loop.close()


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


# --- target ------------------------------------------------------------------------------

@dataclass(frozen=True)
class IncomingEndpoints:
    nbd_host: str
    nbd_port: int
    export: str
    migrate_uri: str


def _paths(spec: InstanceSpec) -> VmPaths:
    return VmPaths(directory=spec.directory, run=spec.run_dir)


def start_incoming(driver: QemuDriver, spec: InstanceSpec, template: TemplateImage,
                   listen_host: str, boot_memory: int | None = None) -> IncomingEndpoints:
    """Start the paused, waiting QEMU on the target with its disk exported over NBD, in its
    cgroup with the instance's limits. ``boot_memory``: the source QEMU's ``-m`` (a live
    ``set memory=`` ballooned below it; the RAM layout must match)."""
    if driver.status(spec).pid is not None:
        raise HostFailure(f"'{spec.name}' already has a QEMU on this host")
    cfg = driver.config(spec, template)
    if boot_memory is not None:
        cfg = dataclasses.replace(cfg, memory=boot_memory)
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
    vm_resources.arrived(spec, paths, read_layout(), pid, cfg.memory)
    nbd_port, migrate_port = free_port(listen_host), free_port(listen_host)
    node = _root_node(paths)
    qmp(paths.qmp, "nbd-server-start", {
        "addr": {"type": "inet", "data": {"host": listen_host, "port": str(nbd_port)}},
    })
    qmp(paths.qmp, "block-export-add", {
        "type": "nbd", "id": EXPORT_ID, "node-name": node, "name": EXPORT_NAME,
        "writable": True,
    })
    uri = f"tcp:{_uri_host(listen_host)}:{migrate_port}"
    qmp(paths.qmp, "migrate-incoming", {"uri": uri})
    return IncomingEndpoints(listen_host, nbd_port, EXPORT_NAME, uri)


def _root_node(paths: VmPaths) -> str:
    for device in qmp(paths.qmp, "query-block"):
        if device.get("device") == ROOT_DEVICE and device.get("inserted"):
            return str(device["inserted"]["node-name"])
    raise HostFailure("the incoming QEMU has no root drive")


def finish_incoming(spec: InstanceSpec, timeout: float = 30.0) -> float:
    """Once the RAM stream is complete: drop the export and run. Returns when it ran."""
    paths = _paths(spec)
    session = QmpSession(paths.qmp)
    try:
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
        session.execute("block-export-del", {"id": EXPORT_ID, "mode": "hard"})
        session.execute("nbd-server-stop")
        session.execute("cont")
        return time.time()
    finally:
        session.close()


def resumed_incoming(spec: InstanceSpec) -> None:
    """After the commit's ``cont`` (outside the downtime): IO throttling and balloon."""
    vm_resources.resumed(spec, _paths(spec))


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

    def __init__(self, spec: InstanceSpec) -> None:
        self.paths = _paths(spec)
        self.session = QmpSession(self.paths.qmp)
        self.result = LiveResult()
        self._nbd_added = False
        self._mirror_started = False
        self._migrating = False

    def close(self) -> None:
        self.session.close()

    def mirror(self, host: str, port: int, export: str, bandwidth: int | None,
               report: Report) -> None:
        s = self.session
        s.execute("migrate-set-capabilities", {"capabilities": [
            {"capability": "events", "state": True}]})
        s.execute("blockdev-add", {
            "driver": "nbd", "node-name": NBD_NODE, "export": export,
            "server": {"type": "inet", "host": host, "port": str(port)},
        })
        self._nbd_added = True
        args: dict[str, Any] = {
            "job-id": MIRROR_JOB, "device": ROOT_DEVICE, "target": NBD_NODE, "sync": "full",
            "copy-mode": "write-blocking", "auto-dismiss": True,
        }
        del bandwidth  # the limit is for the RAM stream; the mirror skips holes anyway
        s.execute("blockdev-mirror", args)
        self._mirror_started = True
        while True:
            job = self._job()
            if job is None:
                raise HostFailure("the disk mirror ended before it was in sync "
                                  "(the target's NBD export went away?)")
            done, total = int(job.get("offset", 0)), int(job.get("len", 0)) or 1
            self.result.disk_bytes = done
            report(done / total, f"disk mirror {_mib(done)}/{_mib(total)} MiB")
            if job.get("ready"):
                return
            if job.get("status") in ("aborting", "concluded", "null"):
                raise HostFailure(f"the disk mirror failed: {job.get('error', 'aborted')}")
            self._drain_events(0.1)

    def _job(self) -> dict[str, Any] | None:
        for job in self.session.execute("query-block-jobs"):
            if job.get("device") == MIRROR_JOB:
                return dict(job)
        return None

    def _drain_events(self, timeout: float) -> dict[str, Any] | None:
        event = self.session.event(timeout)
        if event is not None and event.get("event") == "STOP":
            self.result.stopped_at = event_time(event)
        return event

    def migrate(self, uri: str, bandwidth: int | None, downtime_ms: int,
                report: Report) -> None:
        s = self.session
        s.execute("migrate-set-parameters", {
            "downtime-limit": downtime_ms, "max-bandwidth": bandwidth or UNLIMITED,
        })
        s.execute("migrate", {"uri": uri})
        self._migrating = True
        last_poll = 0.0
        while True:
            event = self._drain_events(0.05)
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
                self._drain_events(0.05)
        self._migrating = False

    def _error(self) -> str:
        with contextlib.suppress(HostFailure):
            return str(self.session.execute("query-migrate").get("error-desc", "no reason"))
        return "no reason given"

    def release_disk(self) -> None:
        """After the switch-over: end the mirror (no pivot) and drop the NBD client."""
        self._end_mirror(force=False)
        self._del_nbd()

    def _end_mirror(self, force: bool) -> None:
        if not self._mirror_started:
            return
        with contextlib.suppress(HostFailure):
            self.session.execute("block-job-cancel", {"device": MIRROR_JOB, "force": force})
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            try:
                if self._job() is None:
                    break
            except HostFailure:
                break
            self._drain_events(0.005)
        self._mirror_started = False

    def _del_nbd(self) -> None:
        if self._nbd_added:
            with contextlib.suppress(HostFailure):
                self.session.execute("blockdev-del", {"node-name": NBD_NODE})
            self._nbd_added = False

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
                if status not in ("active", "setup", "cancelling", "device",
                                  "pre-switchover", "wait-unplug"):
                    break
                time.sleep(0.02)
            self._migrating = False
        self._end_mirror(force=True)
        self._del_nbd()
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
        source._mirror_started = True
        source._nbd_added = True
        source._migrating = True
        return source.rollback(resume)
    finally:
        source.close()


def _mib(value: int) -> str:
    return f"{value / 1024**2:.1f}"
