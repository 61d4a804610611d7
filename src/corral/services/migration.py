"""Migration of instances between hosts, both sides of it.

Source (``migrate``): an Operation holding the instance's lock drives the phases against the
target corrald over TLS: reserve → (VM live: NBD mirror → RAM pre-copy → switch-over |
copy: disk pre-copy → stop → final delta → files) → commit → clean up the source. Every
step that changed something pushes its undo; a failure or a cancel in any phase before the
commit runs the undo stack (the target drops everything, the source runs again as before).

Target (``reserve`` … ``commit``/``abort``): the instance row is reserved in state CREATING
(so a target corrald that dies mid-way removes it at its next start like any half-created
instance), under the instance lock, with a lease the source renews; a source that stops
talking for ``lease_seconds`` gets the reservation aborted by the target's watchdog.

The commit is the single point of no return and only the source decides it: the source
records "committing" before asking, the target records success only after the guest runs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import tarfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from corral.domain.errors import (
    Conflict,
    CorralError,
    HostFailure,
    InvalidInput,
    NotFound,
    Unsupported,
)
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.lifecycle import State
from corral.domain.resources import Resources
from corral.drivers.base import Driver, RuntimeState
from corral.migration.frames import Frame, decode
from corral.migration.peer import PeerClient, describe, env_float
from corral.migration.transfer import DiskCopier, Throttle, allocated_bytes, apply_frames
from corral.services.events import EventBus
from corral.services.instances import InstanceService
from corral.services.networks import NetworkService
from corral.services.operations import Cancelled, OperationContext
from corral.services.remotes import RemoteService
from corral.state.migstore import MigrationRecord, MigrationStore
from corral.state.store import InstanceRecord, OperationRecord
from corral.wire.migration import (
    CommitReply,
    DataDiskTransfer,
    IncomingReply,
    IncomingRequest,
    MigrateRequest,
    NicTransfer,
    SnapshotTransfer,
)

if TYPE_CHECKING:
    from corral.state.backupstore import BackupStore

log = logging.getLogger("corral.migration")

# What stays behind when the instance directory's files move (the disk goes separately,
# nics.json is rewritten by the target's network service, run/ dies with the process).
# snapshots/ is beside the root disk (the instance directory only without pools) and moves
# file by file as disk frames.
_NOT_FILES = {"root.img", "nics.json", "run", "lxc.log", "snapshots"}
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
PRECOPY_ROUNDS = 3
PRECOPY_CONVERGED = 4 * 1024 * 1024  # a pre-copy round this small is as good as it gets


class NoSpace(CorralError):
    code = "no_space"
    status = 507


def _lease() -> float:
    return env_float("CORRAL_MIGRATION_LEASE", 15.0)


def instance_files(directory: Path) -> bytes:
    """A tar of the instance's own files (snapshots, configuration, console log)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        if directory.is_dir():
            for entry in sorted(directory.iterdir()):
                if entry.name in _NOT_FILES or entry.is_socket():
                    continue
                tar.add(entry, arcname=entry.name)
    return buffer.getvalue()


def files_size(directory: Path) -> int:
    total = 0
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.name in _NOT_FILES:
                continue
            if entry.is_file():
                total += entry.stat().st_blocks * 512
            elif entry.is_dir():
                total += sum(p.stat().st_blocks * 512 for p in entry.rglob("*") if p.is_file())
    return total


def snapshot_files(spec: InstanceSpec, ids: list[str]) -> list[tuple[str, Path]]:
    """(name relative to the root disk's directory, path) of every file of the snapshots
    ``ids`` (``snapshots/<id>/…`` beside the root disk)."""
    base = spec.disk_path.parent
    found: list[tuple[str, Path]] = []
    for snapshot_id in ids:
        top = base / "snapshots" / snapshot_id
        if top.is_dir():
            found.extend((p.relative_to(base).as_posix(), p)
                         for p in sorted(top.rglob("*")) if p.is_file())
    return found


def is_qemu(driver: Driver) -> bool:
    from corral.drivers.qemu.driver import QemuDriver

    return isinstance(driver, QemuDriver)


def is_lxc(driver: Driver) -> bool:
    from corral.drivers.lxc.driver import LxcDriver

    return isinstance(driver, LxcDriver)


@dataclass
class Incoming:
    """A reservation on the target."""

    request: IncomingRequest
    rec: InstanceRecord
    spec: InstanceSpec
    lease: float
    last_seen: float = field(default_factory=time.monotonic)
    guard: threading.Lock = field(default_factory=threading.Lock)
    qemu_started: bool = False
    committed: bool = False


class MigrationService:
    def __init__(
        self, store: MigrationStore, instances: InstanceService, networks: NetworkService,
        remotes: RemoteService, events: EventBus,
    ) -> None:
        self.store = store
        self.instances = instances
        self.networks = networks
        self.remotes = remotes
        self.events = events
        self._incoming: dict[str, Incoming] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self.snapshot_store: BackupStore | None = None
        """Snapshot rows (services/snapshots); they move with the instance."""

    # ================================ source ==========================================

    def choose_path(self, kind: Kind, driver: Driver, running: bool, mode: str) -> tuple[str, str]:
        """(path, why) for an instance of ``kind`` that is ``running`` or not."""
        if not running:
            return "offline", "the instance is stopped: its disk and files are copied"
        if mode == "offline":
            return "offline", "asked for --offline: stop, copy, start on the target"
        if kind is Kind.VM:
            if is_qemu(driver):
                return "live", "QEMU live migration: NBD disk mirror, then RAM pre-copy"
            if mode == "live":
                raise InvalidInput("live migration of a VM needs the QEMU driver")
            return "precopy", "this driver cannot move RAM: disk pre-copy, stop, delta, start"
        reason = "not a real container"
        if is_lxc(driver):
            from corral.drivers.lxc.migrate import criu_check

            _ok, reason = criu_check()
        # CRIU restore is not implemented yet: where it would work it is only reported.
        return "precopy", (f"no CRIU ({reason}): disk pre-copied while running, then stop, "
                           "final delta sync, start on the target")

    def migrate(self, ref: str, request: MigrateRequest) -> OperationRecord:
        view = self.instances.get(ref)
        rec = view.record
        if view.state not in (State.RUNNING, State.STOPPED):
            raise Conflict(f"'{rec.name}' is {view.state.value}; migrate a running or "
                           "stopped instance")
        remote = self.remotes.get(request.target)
        driver = self.instances.driver(rec.kind)
        running = view.state is State.RUNNING
        path, why = self.choose_path(rec.kind, driver, running, request.mode)
        if path == "live" and self.instances.spec(rec).data_disks:
            raise Unsupported(
                f"'{rec.name}' has data disks: only the root disk is mirrored live so far; "
                "use --offline to move it with them (stopped, copied, started on the target)")
        mid = str(uuid.uuid4())

        def work(ctx: OperationContext) -> None:
            self.store.insert_migration(MigrationRecord(
                id=mid, direction="out", instance=rec.name, instance_id=rec.id,
                kind=rec.kind.value, peer=remote.name, path=path, status="running",
                phase="preparing", operation=ctx.id,
                details={"why": why, "was_running": running, "target_url": remote.url},
            ))
            _SourceRun(self, ctx, mid, rec, remote.name, path, request, running).run()

        return self.instances.ops.submit("migrate", rec.name, work)

    def get(self, ref: str) -> MigrationRecord:
        try:
            return self.store.get_migration(ref)
        except NotFound:
            return self.store.find_by_operation(ref)

    # ================================ target ==========================================

    def reserve(self, request: IncomingRequest, local_host: str) -> IncomingReply:
        kind = Kind.parse(request.kind)
        driver = self.instances.driver(kind)
        template = self.instances.templates.get(request.template)
        if template.version != request.template_version:
            raise Conflict(
                f"template '{request.template}' is version {template.version} here, "
                f"{request.template_version} on the source"
            )
        if request.path == "live" and not is_qemu(driver):
            raise InvalidInput("this host cannot receive a live VM (no QEMU driver)")
        resources = Resources.from_dict(dict(request.resources))
        self._check_space(self.instances.directory, request)
        for nic in request.nics:
            self.networks.get_network(nic.network)  # NotFound names the missing network
        if request.idmap_start is not None and not request.privileged and is_lxc(driver):
            from corral.host.idmap import root_idmap

            here = root_idmap()
            if here is None or here.uid.start != request.idmap_start:
                raise Conflict(
                    "the container's files are shifted to host uid "
                    f"{request.idmap_start}; this host maps root to "
                    f"{None if here is None else here.uid.start}"
                )
        rec = self.instances.store.insert_instance(
            request.name, kind, request.template, resources, request.privileged,
            self.instances.node, request.id,
        )
        spec = self.instances.spec(rec)
        incoming = Incoming(request, rec, spec, request.lease_seconds)
        try:
            spec = incoming.spec = self._place_root_disk(rec, resources)
            self.store.insert_migration(MigrationRecord(
                id=request.migration_id, direction="in", instance=rec.name,
                instance_id=rec.id, kind=kind.value, peer=request.source_node,
                path=request.path, status="running", phase="reserved", operation=None,
                details={"source_id": request.id},
            ))
            spec.directory.mkdir(parents=True, exist_ok=False)
            self._check_space(spec.disk_path.parent, request)
            with spec.disk_path.open("wb") as disk:
                disk.truncate(request.disk_size)
            spec = incoming.spec = self._place_data_disks(rec, request.data_disks)
            for nic in request.nics:
                self.networks.add_nic(str(rec.id), nic.network, nic.addresses, nic.mac,
                                      nic.antispoof)
            self.instances.ops.locks.acquire(rec.name, request.migration_id, "migrate-in")
            reply = IncomingReply(migration_id=request.migration_id, id=rec.id)
            if request.path == "live":
                from corral.drivers.qemu.driver import QemuDriver
                from corral.drivers.qemu.migrate import start_incoming

                assert isinstance(driver, QemuDriver)
                incoming.qemu_started = True
                ends = start_incoming(driver, spec, template, local_host,
                                      request.boot_memory)
                reply = reply.model_copy(update={
                    "nbd_host": ends.nbd_host, "nbd_port": ends.nbd_port,
                    "nbd_export": ends.export, "migrate_uri": ends.migrate_uri,
                })
        except BaseException as exc:
            self._drop(incoming, f"reservation failed: {describe(exc)}")
            raise
        with self._guard:
            self._incoming[request.migration_id] = incoming
        self._ensure_watchdog()
        log.info("reserved %s (id %s) for migration %s from %s", rec.name, rec.id,
                 request.migration_id, request.source_node)
        return reply

    @staticmethod
    def _check_space(where: Path, request: IncomingRequest) -> None:
        need = request.disk_allocated + request.files_size + 16 * 1024**2
        free = shutil.disk_usage(where).free
        if need > free:
            raise NoSpace(
                f"not enough disk space on the target: {free // 1024**2} MiB free in "
                f"{where}, the instance needs {need // 1024**2} MiB"
            )

    def _place_root_disk(self, rec: InstanceRecord, resources: Resources) -> InstanceSpec:
        """With storage pools, the arriving root disk goes to the default pool, as a new
        instance's would; without, into the instance directory (the driver's place)."""
        from corral.services.storage import ROOT, StorageService
        from corral.state.storagestore import DiskRecord

        storage = self.instances.storage
        if isinstance(storage, StorageService):
            pool = storage.default_pool()
            pool.volume(rec.id, ROOT).parent.mkdir(parents=True, exist_ok=True)
            storage.store.insert_disk(DiskRecord(rec.id, ROOT, 0, pool.name, resources.disk))
        return self.instances.spec(rec)

    def _place_data_disks(self, rec: InstanceRecord,
                          disks: list[DataDiskTransfer]) -> InstanceSpec:
        """Data disks arrive in the default pool, as sparse files of their source's length."""
        from corral.services.storage import StorageService
        from corral.state.storagestore import DiskRecord

        if not disks:
            return self.instances.spec(rec)
        storage = self.instances.storage
        if not isinstance(storage, StorageService):
            raise Unsupported("this host has no storage pools for the instance's data disks")
        pool = storage.default_pool()
        for disk in disks:
            if not re.fullmatch(r"[a-z0-9-]{1,20}", disk.name) or disk.name == "root":
                raise InvalidInput(f"bad data disk name '{disk.name}'")
            path = pool.volume(rec.id, disk.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            storage.store.insert_disk(DiskRecord(rec.id, disk.name, disk.idx, pool.name,
                                                 disk.size, disk.pending_size, disk.mount))
            with path.open("xb") as image:
                image.truncate(disk.file_size)
        return self.instances.spec(rec)

    def _side_file(self, incoming: Incoming, name: str, size: int) -> Path:
        """The target path of ``name`` (a snapshot's file or a data disk, relative to the
        root disk's directory), created with length ``size``; anything else is refused."""
        spec, request = incoming.spec, incoming.request
        parts = PurePosixPath(name).parts
        if not parts or not all(_PART.match(part) for part in parts):
            raise InvalidInput(f"bad file name '{name}'")
        data = {f"{d.name}.img": d for d in spec.data_disks}
        if len(parts) == 1 and parts[0] in data:
            return data[parts[0]].path
        if (len(parts) < 3 or parts[0] != "snapshots"
                or parts[1] not in {s.id for s in request.snapshots}):
            raise InvalidInput(f"'{name}' is no file of this migration")
        path = spec.disk_path.parent.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
        finally:
            os.close(fd)
        return path

    def _take(self, mid: str) -> Incoming:
        with self._guard:
            incoming = self._incoming.get(mid)
        if incoming is None:
            raise NotFound(f"no incoming migration '{mid}' on this host")
        incoming.last_seen = time.monotonic()
        return incoming

    def heartbeat(self, mid: str) -> None:
        self._take(mid)

    def status(self, mid: str) -> MigrationRecord:
        rec = self.store.get_migration(mid)
        if rec.direction != "in":
            raise NotFound(f"no incoming migration '{mid}' on this host")
        return rec

    def receive_disk(self, mid: str, body: bytes, file: str | None = None,
                     size: int = 0) -> int:
        incoming = self._take(mid)
        with incoming.guard:
            try:
                path = (incoming.spec.disk_path if file is None
                        else self._side_file(incoming, file, size))
                return apply_frames(path, decode(body))
            except OSError as exc:
                if exc.errno == 28:
                    raise NoSpace(f"the target's disk is full: {exc}") from exc
                raise HostFailure(f"writing the disk image failed: {exc}") from exc

    def receive_files(self, mid: str, body: bytes) -> None:
        incoming = self._take(mid)
        with incoming.guard, tarfile.open(fileobj=io.BytesIO(body), mode="r") as tar:
            try:
                tar.extractall(incoming.spec.directory, filter="data")
            except OSError as exc:
                raise HostFailure(f"writing the instance's files failed: {exc}") from exc

    def commit(self, mid: str, start: bool) -> CommitReply:
        incoming = self._take(mid)
        with incoming.guard:
            rec, spec = incoming.rec, incoming.spec
            self.store.update_migration(mid, phase="committing")
            driver = self.instances.driver(rec.kind)
            template = self.instances.templates.get(rec.template)
            if incoming.request.path == "live":
                from corral.drivers.qemu.migrate import finish_incoming

                resumed_at = finish_incoming(spec)
                state = State.RUNNING
                self._resumed(spec)
            else:
                if is_lxc(driver):
                    from corral.drivers.lxc.driver import LxcDriver
                    from corral.drivers.lxc.migrate import adopt

                    assert isinstance(driver, LxcDriver)
                    adopt(driver, spec, template)
                state = State.STOPPED
                if start:
                    driver.start(spec, template)
                    state = State.RUNNING
                resumed_at = time.time()
            incoming.committed = True
            self._import_snapshots(incoming)
            self.instances.store.set_state(rec.id, state)
            self.store.update_migration(mid, status="success", phase="done")
            with self._guard:
                self._incoming.pop(mid, None)
            self.instances.ops.locks.release(rec.name, mid)
        with contextlib.suppress(Exception):
            self.networks.plug_instance(rec.id)
        self.events.publish("instance.migrated-in", instance=rec.name, id=rec.id,
                            source=incoming.request.source_node)
        return CommitReply(state=state.value, resumed_at=resumed_at)

    @staticmethod
    def _resumed(spec: InstanceSpec) -> None:
        """The guest runs here (the commit cannot fail any more): the QMP settings."""
        from corral.drivers.qemu.migrate import resumed_incoming

        try:
            resumed_incoming(spec)
        except CorralError as exc:
            log.warning("re-applying IO limits/balloon to %s after migrating in: %s",
                        spec.name, exc.message)

    def _import_snapshots(self, incoming: Incoming) -> None:
        store, request = self.snapshot_store, incoming.request
        if store is None or not request.snapshots:
            return
        for snap in request.snapshots:
            from corral.state.backupstore import SnapshotRecord

            store.insert_snapshot(SnapshotRecord(
                snap.id, incoming.rec.id, snap.name, snap.parent, snap.memory,
                snap.consistency, snap.method, datetime.fromisoformat(snap.created_at)))
        store.set_head(incoming.rec.id, request.snapshot_head)

    def abort(self, mid: str, reason: str) -> None:
        with self._guard:
            incoming = self._incoming.pop(mid, None)
        if incoming is None:
            with contextlib.suppress(NotFound):
                if self.store.get_migration(mid).status == "success":
                    raise Conflict(f"migration {mid} was committed here; it cannot be aborted")
            raise NotFound(f"no incoming migration '{mid}' on this host")
        with incoming.guard:
            if incoming.committed:
                raise Conflict(f"migration {mid} was committed here; it cannot be aborted")
            self._drop(incoming, reason)

    def _drop(self, incoming: Incoming, reason: str) -> None:
        """Remove everything a reservation made: QEMU, NICs, files, row, lock."""
        rec, spec = incoming.rec, incoming.spec
        driver = self.instances.driver(rec.kind)
        problems: list[str] = []
        with contextlib.suppress(Exception):
            if driver.status(spec).state in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
                driver.stop(spec, force=True, timeout=0)
        steps: list[Callable[[], None]] = [
                     lambda: self.networks.forget_instance(rec.id),
                     lambda: self._forget_snapshots(rec.id),
                     lambda: driver.delete(spec),
                     lambda: self.instances.storage.release(spec),
                     lambda: shutil.rmtree(spec.directory, ignore_errors=True),
                     lambda: self.instances.store.delete_instance(rec.id)]
        for step in steps:
            try:
                step()
            except Exception as exc:
                problems.append(describe(exc))
        self.instances.ops.locks.release(rec.name, incoming.request.migration_id)
        with contextlib.suppress(NotFound):
            self.store.update_migration(
                incoming.request.migration_id, status="failure", phase="aborted",
                error=reason + (f" (cleanup: {'; '.join(problems)})" if problems else ""),
            )
        log.warning("incoming migration %s of %s aborted: %s", incoming.request.migration_id,
                    rec.name, reason)

    def _forget_snapshots(self, instance_id: int) -> None:
        if self.snapshot_store is not None:
            self.snapshot_store.forget_instance(instance_id)

    def _ensure_watchdog(self) -> None:
        with self._guard:
            if self._watchdog is not None and self._watchdog.is_alive():
                return
            self._watchdog = threading.Thread(target=self._watch, daemon=True,
                                              name="migration-lease")
            self._watchdog.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            now = time.monotonic()
            with self._guard:
                expired = [(mid, inc) for mid, inc in self._incoming.items()
                           if not inc.committed and now - inc.last_seen > inc.lease
                           and not inc.guard.locked()]
            for mid, inc in expired:
                with contextlib.suppress(CorralError):
                    self.abort(mid, f"the source ({inc.request.source_node}) stopped talking "
                                    f"for {inc.lease:g} s")

    # ============================== daemon start ======================================

    def recover(self) -> None:
        """Before instances are reconciled: roll back what a killed corrald left mid-way."""
        for rec in self.store.unfinished():
            try:
                if rec.direction == "in":
                    self._recover_incoming(rec)
                else:
                    self._recover_outgoing(rec)
            except Exception as exc:
                log.exception("recovering migration %s of %s", rec.id, rec.instance)
                self.store.update_migration(rec.id, status="failure", phase="interrupted",
                                            error=f"recovery failed: {describe(exc)}")

    def _recover_incoming(self, rec: MigrationRecord) -> None:
        try:
            inst = self.instances.store.get_instance(rec.instance)
        except NotFound:
            self.store.update_migration(rec.id, status="failure", phase="interrupted",
                                        error="corrald stopped during the migration")
            return
        if inst.state is not State.CREATING:  # committed; only the record was not updated
            self.store.update_migration(rec.id, status="success", phase="done")
            return
        request = IncomingRequest(
            migration_id=rec.id, source_node=rec.peer, name=inst.name, id=inst.id,
            kind=inst.kind.value, template=inst.template, template_version="",
            resources=inst.resources.to_dict(), privileged=inst.privileged, nics=[],
            disk_size=0, disk_allocated=0, files_size=0,
            path="live" if rec.path == "live" else "copy",
        )
        self._drop(Incoming(request, inst, self.instances.spec(inst), 0.0),
                   "corrald on the target stopped during the migration")

    def _recover_outgoing(self, rec: MigrationRecord) -> None:
        remote = None
        with contextlib.suppress(NotFound):
            remote = self.remotes.get(rec.peer)
        try:
            inst = self.instances.store.get_instance(rec.instance)
        except NotFound:
            inst = None
        committed = False
        if remote is not None and rec.phase in ("committing", "committed", "cleaning up"):
            with contextlib.suppress(CorralError), PeerClient(remote, timeout=10) as peer:
                committed = peer.status(rec.id).get("status") == "success"
        if committed and inst is not None:
            _SourceRun.remove_source(self, inst)
            self.store.update_migration(rec.id, status="success", phase="done",
                                        error=None)
            return
        if remote is not None:
            with contextlib.suppress(CorralError), PeerClient(remote, timeout=10) as peer:
                peer.abort(rec.id, "corrald on the source restarted during the migration")
        problems: list[str] = []
        if inst is not None:
            spec = self.instances.spec(inst)
            was_running = bool(rec.details.get("was_running"))
            if rec.path == "live":
                from corral.drivers.qemu.migrate import recover_source

                problems = recover_source(spec, resume=was_running)
            elif was_running and rec.details.get("stopped"):
                driver = self.instances.driver(inst.kind)
                with contextlib.suppress(Exception):
                    if driver.status(spec).state is RuntimeState.STOPPED:
                        driver.start(spec, self.instances.templates.get(inst.template))
        self.store.update_migration(
            rec.id, status="failure", phase="rolled back",
            error="corrald on the source stopped during the migration; rolled back"
            + (f" ({'; '.join(problems)})" if problems else ""),
        )

    def close(self) -> None:
        self._stop.set()


class _SourceRun:
    """One outgoing migration, run inside its Operation."""

    def __init__(self, service: MigrationService, ctx: OperationContext, mid: str,
                 rec: InstanceRecord, remote: str, path: str, request: MigrateRequest,
                 running: bool) -> None:
        self.s = service
        self.ctx = ctx
        self.mid = mid
        self.rec = rec
        self.spec = service.instances.spec(rec)
        self.driver = service.instances.driver(rec.kind)
        self.remote = service.remotes.get(remote)
        self.path = path
        self.request = request
        self.running = running
        self.undo: list[tuple[str, Callable[[], None]]] = []
        self.started = time.monotonic()
        self.details: dict[str, Any] = {}
        self.committing = False
        self._hb_stop = threading.Event()
        self.side_files: list[tuple[str, Path]] = []
        """Snapshots' files beside the root disk: immutable while the migration holds the
        instance lock, so sent once, before anything that counts as downtime."""

    # -- helpers --------------------------------------------------------------------------
    def phase(self, fraction: float, text: str) -> None:
        """Progress + cancellation point (before the commit)."""
        if self.committing:
            self.ctx.cancel_requested.clear()
        self.ctx.progress(fraction, text)
        self.s.store.update_migration(self.mid, phase=text[:200])

    def check(self) -> None:
        if self.ctx.cancel_requested.is_set() and not self.committing:
            raise Cancelled(f"migration of '{self.rec.name}' was cancelled")

    def _heartbeat(self, peer: PeerClient, every: float) -> None:
        while not self._hb_stop.wait(every):
            with contextlib.suppress(CorralError):
                peer.heartbeat(self.mid)

    # -- the run --------------------------------------------------------------------------
    def run(self) -> None:
        peer = PeerClient(self.remote, timeout=120.0)
        heartbeat: threading.Thread | None = None
        try:
            self.phase(0.01, f"contacting {self.remote.name}")
            peer.host()
            reply = self._reserve(peer)
            lease = _lease()
            heartbeat = threading.Thread(target=self._heartbeat, args=(peer, lease / 4),
                                         daemon=True, name="migration-heartbeat")
            heartbeat.start()
            commit = self._live(peer, reply) if self.path == "live" else self._copy(peer)
            self.details["id"] = reply.id
            self._finish(commit)
        except BaseException as exc:
            self._rollback(exc)
            raise
        finally:
            self._hb_stop.set()
            if heartbeat is not None:
                heartbeat.join(5)
            peer.close()

    def _reserve(self, peer: PeerClient) -> IncomingReply:
        idmap_start = None
        if self.rec.kind is Kind.CT and not self.rec.privileged and is_lxc(self.driver):
            from corral.host.idmap import root_idmap

            found = root_idmap()
            idmap_start = None if found is None else found.uid.start
        nics = [NicTransfer(index=n.index, network=n.network.name, mac=n.mac,
                            addresses=[str(a) for a in n.addresses], antispoof=n.antispoof)
                for _name, n in self.s.networks.list_nics(self.rec.name)]
        template = self.s.instances.templates.get(self.rec.template)
        disk = self.spec.disk_path
        snapshots: list[SnapshotTransfer] = []
        head = None
        if self.s.snapshot_store is not None:
            base = disk.parent / "snapshots"
            snapshots = [SnapshotTransfer(
                id=r.id, name=r.name, parent=r.parent, memory=r.memory,
                consistency=r.consistency, method=r.method, created_at=r.created_at.isoformat(),
            ) for r in self.s.snapshot_store.snapshots(self.rec.id) if (base / r.id).is_dir()]
            head = self.s.snapshot_store.head(self.rec.id)
        self.side_files = snapshot_files(self.spec, [s.id for s in snapshots])
        boot_memory = None
        if self.path == "live":
            from corral.drivers.qemu.migrate import source_boot_memory

            boot_memory = source_boot_memory(self.spec)
        pending: dict[str, int | None] = {}
        from corral.services.storage import StorageService

        if isinstance(self.s.instances.storage, StorageService):
            pending = {d.name: d.pending_size
                       for d in self.s.instances.storage.store.disks(self.rec.id)}
        data_disks = [DataDiskTransfer(name=d.name, idx=d.index, size=d.size,
                                       file_size=d.path.stat().st_size,
                                       mount=d.mount or None, pending_size=pending.get(d.name))
                      for d in self.spec.data_disks]
        request = IncomingRequest(
            migration_id=self.mid, source_node=self.s.instances.node, name=self.rec.name,
            id=self.rec.id, kind=self.rec.kind.value, template=self.rec.template,
            template_version=template.version, resources=self.rec.resources.to_dict(),
            privileged=self.rec.privileged, nics=nics,
            disk_size=disk.stat().st_size if disk.exists() else 0,
            disk_allocated=allocated_bytes(disk) if disk.exists() else 0,
            files_size=files_size(self.spec.directory)
            + sum(allocated_bytes(p) for _n, p in self.side_files)
            + sum(allocated_bytes(d.path) for d in self.spec.data_disks),
            path="live" if self.path == "live" else "copy", idmap_start=idmap_start,
            lease_seconds=_lease(), snapshots=snapshots,
            snapshot_head=head if any(s.id == head for s in snapshots) else None,
            data_disks=data_disks, boot_memory=boot_memory,
        )
        self.phase(0.02, f"reserving '{self.rec.name}' on {self.remote.name}")
        reply = peer.reserve(request)
        self.undo.append(("drop the reservation on the target",
                          lambda: peer.abort(self.mid, "the source rolled back")))
        if reply.id != self.rec.id:
            self.details["id_changed"] = f"{self.rec.id} -> {reply.id}"
        return reply

    def _send_side_files(self, peer: PeerClient, lo: float, hi: float) -> int:
        total = sum(allocated_bytes(p) for _n, p in self.side_files) or 1
        done = 0
        for name, path in self.side_files:
            done += self._send_file(peer, name, path, done, total, lo, hi)
        return done

    def _send_file(self, peer: PeerClient, name: str, path: Path, before: int, total: int,
                   lo: float, hi: float) -> int:
        size = path.stat().st_size

        def send(frames: list[Frame]) -> None:
            peer.send_disk(self.mid, frames, name, size)

        def report(sent: int) -> None:
            self.phase(lo + (hi - lo) * min(1.0, (before + sent) / total),
                       f"{name} {(before + sent) / 1024**2:.1f}/{total / 1024**2:.1f} MiB")

        sent = DiskCopier(path, send).round(report, self.check, Throttle(self.request.bandwidth))
        if sent == 0:  # an empty (or all-hole) file: make it exist with its length
            send([])
        return sent

    def _live(self, peer: PeerClient, reply: IncomingReply) -> CommitReply:
        from corral.drivers.qemu.migrate import LiveSource

        if self.side_files:
            self.phase(0.03, "sending snapshots")
            self._send_side_files(peer, 0.03, 0.05)

        assert reply.nbd_host and reply.nbd_port and reply.nbd_export and reply.migrate_uri
        source = LiveSource(self.spec)
        self.undo.append(("resume the source guest",
                          lambda: self._live_undo(source)))
        bandwidth = self.request.bandwidth
        source.mirror(reply.nbd_host, reply.nbd_port, reply.nbd_export, bandwidth,
                      lambda f, text: self.phase(0.05 + 0.5 * f, text))
        self.phase(0.55, "sending the instance's files")
        peer.send_files(self.mid, instance_files(self.spec.directory))
        source.migrate(reply.migrate_uri, bandwidth, self.request.downtime_ms,
                       lambda f, text: self.phase(0.56 + 0.39 * f, text))
        self.check()
        # The source is stopped now: from here on, speed is downtime.
        self.committing = True
        source.release_disk()
        self.s.store.update_migration(self.mid, phase="committing")
        commit = self._commit(peer, start=True)
        r = source.result
        self.details.update({
            "downtime_ms": round((commit.resumed_at - r.stopped_at) * 1000, 1)
            if r.stopped_at else None,
            "qemu_downtime_ms": r.qemu_downtime_ms, "disk_bytes": r.disk_bytes,
            "ram_bytes": r.ram_bytes,
        })
        source.close()
        return commit

    def _live_undo(self, source: Any) -> None:
        problems = source.rollback(resume=self.running)
        source.close()
        if problems:
            raise HostFailure("; ".join(problems))

    def _copiers(self, peer: PeerClient) -> list[DiskCopier]:
        """The root disk and every data disk (``<name>.img`` on the wire)."""
        def sender(name: str, size: int) -> Callable[[list[Frame]], None]:
            return lambda frames: peer.send_disk(self.mid, frames, name, size)

        return [DiskCopier(self.spec.disk_path, lambda frames: peer.send_disk(self.mid, frames)),
                *(DiskCopier(d.path, sender(f"{d.name}.img", d.path.stat().st_size))
                  for d in self.spec.data_disks)]

    def _copy(self, peer: PeerClient) -> CommitReply:
        copiers = self._copiers(peer)
        throttle = Throttle(self.request.bandwidth)
        disk_bytes = sum(allocated_bytes(c.path) for c in copiers) or 1
        sent_total = self._send_side_files(peer, 0.03, 0.05) if self.side_files else 0

        def rnd(lo: float, hi: float, label: str) -> int:
            sent = 0
            for copier in copiers:
                sent += copier.round(self._reporter(lo, hi, label, sent, disk_bytes),
                                     self.check, throttle)
            return sent

        if self.running and self.path == "precopy":
            for attempt in range(PRECOPY_ROUNDS):
                sent = rnd(0.05, 0.7, f"disk pre-copy (round {attempt + 1}, running)")
                sent_total += sent
                if attempt > 0 and sent <= PRECOPY_CONVERGED:
                    break
        self.check()
        stopped_at = time.time()
        if self.running:
            self.phase(0.72, "stopping the instance on the source")
            self.s.store.update_migration(self.mid, details={"stopped": True})
            self.undo.append(("start the source again", self._restart_source))
            self.driver.stop(self.spec, force=False, timeout=10.0)
        final = rnd(0.75, 0.9, "final disk delta (stopped)")
        sent_total += final
        self.phase(0.9, "sending the instance's files")
        peer.send_files(self.mid, instance_files(self.spec.directory))
        self.check()
        self.committing = True
        self.s.store.update_migration(self.mid, phase="committing")
        self.phase(0.93, f"starting on {self.remote.name}" if self.running else "committing")
        commit = self._commit(peer, start=self.running)
        self.details.update({
            "disk_bytes": sent_total, "final_delta_bytes": final,
            "downtime_ms": round((commit.resumed_at - stopped_at) * 1000, 1)
            if self.running else None,
        })
        return commit

    def _reporter(self, lo: float, hi: float, label: str, before: int,
                  total: int) -> Callable[[int], None]:
        def report(done: int) -> None:
            done += before
            self.phase(lo + (hi - lo) * min(1.0, done / total),
                       f"{label} {done / 1024**2:.1f}/{total / 1024**2:.1f} MiB")
        return report

    def _restart_source(self) -> None:
        if self.driver.status(self.spec).state is RuntimeState.STOPPED:
            self.driver.start(self.spec, self.s.instances.templates.get(self.rec.template))

    def _commit(self, peer: PeerClient, start: bool) -> CommitReply:
        try:
            return peer.commit(self.mid, start)
        except CorralError as first:
            # Did the target commit although the answer was lost? Only then go forward.
            try:
                status = peer.status(self.mid)
            except CorralError:
                self.committing = False
                raise HostFailure(
                    f"the target failed at the commit ({first.message}) and cannot be asked "
                    "whether it committed"
                ) from first
            if status.get("status") == "success":
                return CommitReply(state="running" if start else "stopped",
                                   resumed_at=time.time())
            self.committing = False
            raise

    def _finish(self, commit: CommitReply) -> None:
        self.phase(0.96, "cleaning up the source")
        self.s.store.update_migration(self.mid, phase="cleaning up")
        self.remove_source(self.s, self.rec)
        total_ms = round((time.monotonic() - self.started) * 1000, 1)
        self.details.update({"total_ms": total_ms, "target_state": commit.state})
        self.s.store.update_migration(self.mid, status="success", phase="done",
                                      details=self.details)
        self.s.events.publish("instance.migrated", instance=self.rec.name,
                              target=self.remote.name, path=self.path, **{
                                  k: v for k, v in self.details.items()
                                  if k in ("downtime_ms", "total_ms")})

    @staticmethod
    def remove_source(service: MigrationService, rec: InstanceRecord) -> None:
        spec = service.instances.spec(rec)
        driver = service.instances.driver(rec.kind)
        if driver.status(spec).state in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
            driver.stop(spec, force=True, timeout=0)
        with contextlib.suppress(CorralError):
            service.networks.forget_instance(rec.id)
        driver.delete(spec)
        service.instances.storage.release(spec)
        shutil.rmtree(spec.directory, ignore_errors=True)
        service.instances.store.delete_instance(rec.id)
        service._forget_snapshots(rec.id)

    def _rollback(self, exc: BaseException) -> None:
        problems: list[str] = []
        for what, step in reversed(self.undo):
            try:
                step()
            except Exception as failure:
                problems.append(f"{what}: {describe(failure)}")
        status = "cancelled" if isinstance(exc, Cancelled) else "failure"
        error = describe(exc)
        if problems:
            error += " (rollback: " + "; ".join(problems) + ")"
        with contextlib.suppress(CorralError):
            self.s.store.update_migration(self.mid, status=status, phase="rolled back",
                                          error=error, details=self.details)
        log.warning("migration %s of %s rolled back: %s", self.mid, self.rec.name, error)
