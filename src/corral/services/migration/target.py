"""The target side of a migration: ``reserve`` … ``commit``/``abort`` of incoming instances.

The instance row is reserved in state CREATING (so a target corrald that dies mid-way removes
it at its next start like any half-created instance), under the instance lock, with a lease
the source renews; a source that stops talking for ``lease_seconds`` gets the reservation
aborted by the watchdog (recovery.py). The target records success only after the guest runs.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from corral.domain.errors import (
    Conflict,
    CorralError,
    HostFailure,
    InvalidInput,
    NotFound,
)
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.lifecycle import State
from corral.domain.resources import Resources
from corral.domain.statuses import MigrationStatus
from corral.domain.undo import Undo, describe
from corral.drivers.base import Driver, RuntimeState
from corral.drivers.migration import (
    CHECKPOINT_DIR,
    LiveOffer,
    MigrationHooks,
    MigrationPath,
    StreamTls,
    criu_seconds,
    migration_hooks,
    read_phases,
)
from corral.host.writeback import start_writeback
from corral.migration.files import NoSpace, check_space, extract_files, side_file
from corral.migration.frames import decode
from corral.migration.transfer import apply_frames
from corral.services.faults import fault_point
from corral.state.migstore import MigrationRecord
from corral.state.store import InstanceRecord
from corral.wire.migration import CommitReply, DataDiskTransfer, IncomingReply, IncomingRequest

if TYPE_CHECKING:
    from corral.services.migration.service import MigrationService

log = logging.getLogger("corral.migration")
ROOT = "root"  # the root disk's name (its NBD export, its storage record)
BEFORE_RESTORE = "commit handler before the restore (row, adopt)"
AFTER_RESUME = "after the resume to the reply (limits, rows, plug; not downtime)"


@dataclass
class Incoming:
    """A reservation on the target."""

    request: IncomingRequest
    rec: InstanceRecord
    spec: InstanceSpec
    lease: float
    last_seen: float = field(default_factory=time.monotonic)
    guard: threading.Lock = field(default_factory=threading.Lock)
    live_started: bool = False
    committed: bool = False


def _offer(request: IncomingRequest, tls: StreamTls | None = None) -> LiveOffer:
    """What the source's runtime said the incoming side must match."""
    return LiveOffer(boot_memory=request.boot_memory, disks=request.live_disks, tls=tls)


class TargetSide:
    """The incoming migrations of this host (in memory; their rows in the store)."""

    def __init__(self, service: MigrationService) -> None:
        self.s = service
        self._incoming: dict[str, Incoming] = {}
        self._guard = threading.Lock()

    def reserve(self, request: IncomingRequest, local_host: str) -> IncomingReply:
        s = self.s
        kind = Kind.parse(request.kind)
        driver = s.instances.driver(kind)
        template = s.instances.templates.get(request.template)
        if template.version != request.template_version:
            raise Conflict(
                f"template '{request.template}' is version {template.version} here, "
                f"{request.template_version} on the source"
            )
        hooks = migration_hooks(driver)
        if request.path == "live" and MigrationPath.LIVE not in hooks.paths:
            raise InvalidInput("this host cannot receive a live VM (no QEMU driver)")
        if request.path == "live" and not request.source_cert:
            raise InvalidInput("the source sent no certificate for the encrypted disk and RAM "
                               "streams (an older Corral?): upgrade it first")
        resources = Resources.from_dict(dict(request.resources))
        check_space(s.instances.directory, request)
        for nic in request.nics:
            s.networks.get_network(nic.network)  # NotFound names the missing network
        hooks.check_arrival(request.idmap_start, request.privileged)
        rec = s.instances.store.insert_instance(
            request.name, kind, request.template, resources, request.privileged,
            s.instances.node, request.id,
        )
        spec = s.instances.spec(rec)
        incoming = Incoming(request, rec, spec, request.lease_seconds)
        try:
            spec = incoming.spec = self._place_root_disk(rec, resources)
            s.store.insert_migration(MigrationRecord(
                id=request.migration_id, direction="in", instance=rec.name,
                instance_id=rec.id, kind=kind.value, peer=request.source_node,
                path=request.path, status=MigrationStatus.RUNNING, phase="reserved", operation=None,
                details={"source_id": request.id},
            ))
            spec.directory.mkdir(parents=True, exist_ok=False)
            check_space(spec.disk_path.parent, request)
            with spec.disk_path.open("wb") as disk:
                disk.truncate(request.disk_size)
            spec = incoming.spec = self._place_data_disks(rec, request.data_disks)
            for nic in request.nics:
                s.networks.add_nic(str(rec.id), nic.network, nic.addresses, nic.mac,
                                   nic.antispoof)
            s.instances.ops.locks.acquire(rec.name, request.migration_id, "migrate-in")
            reply = IncomingReply(migration_id=request.migration_id, id=rec.id)
            if request.path == "live":
                incoming.live_started = True
                assert request.source_cert is not None
                tls = s.stream_tls(request.source_cert)
                ends = hooks.start_incoming(spec, template, local_host, _offer(request, tls))
                reply = reply.model_copy(update={
                    "stream_tls": True,
                    "nbd_host": ends.nbd_host, "nbd_port": ends.nbd_port,
                    "nbd_export": ends.exports[ROOT], "nbd_exports": dict(ends.exports),
                    "migrate_uri": ends.migrate_uri,
                })
        except BaseException as exc:
            self.drop(incoming, f"reservation failed: {describe(exc)}")
            raise
        with self._guard:
            self._incoming[request.migration_id] = incoming
        log.info("reserved %s (id %s) for migration %s from %s", rec.name, rec.id,
                 request.migration_id, request.source_node)
        return reply

    def _place_root_disk(self, rec: InstanceRecord, resources: Resources) -> InstanceSpec:
        """With storage pools, the arriving root disk goes to the default pool, as a new
        instance's would; without, into the instance directory (the driver's place)."""
        self.s.instances.storage.receive_root(rec.id, resources.disk)
        return self.s.instances.spec(rec)

    def _place_data_disks(self, rec: InstanceRecord,
                          disks: list[DataDiskTransfer]) -> InstanceSpec:
        """Data disks arrive in the default pool, as sparse files of their source's length."""
        for disk in disks:
            if not re.fullmatch(r"[a-z0-9-]{1,20}", disk.name) or disk.name == ROOT:
                raise InvalidInput(f"bad data disk name '{disk.name}'")
            path = self.s.instances.storage.receive_data_disk(
                rec.id, disk.name, disk.idx, disk.size, disk.pending_size, disk.mount)
            with path.open("xb") as image:
                image.truncate(disk.file_size)
        return self.s.instances.spec(rec)

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
        rec = self.s.store.get_migration(mid)
        if rec.direction != "in":
            raise NotFound(f"no incoming migration '{mid}' on this host")
        return rec

    def receive_disk(self, mid: str, body: bytes, file: str | None = None,
                     size: int = 0) -> int:
        incoming = self._take(mid)
        with incoming.guard:
            try:
                path: Path = (incoming.spec.disk_path if file is None
                              else side_file(incoming.spec, incoming.request, file, size))
                written = apply_frames(path, decode(body))
                # on disk before a restore binds it to a loop device, which would flush it
                # (the pre-copy's pages) inside the downtime
                start_writeback(path)
                return written
            except OSError as exc:
                if exc.errno == 28:
                    raise NoSpace(f"the target's disk is full: {exc}") from exc
                raise HostFailure(f"writing the disk image failed: {exc}") from exc

    def receive_files(self, mid: str, body: bytes) -> None:
        incoming = self._take(mid)
        with incoming.guard:
            fault_point("migrate.target.receiving")  # the disks are here, not the files
            try:
                extract_files(incoming.spec.directory, body)
            except OSError as exc:
                if exc.errno == 28:
                    raise NoSpace(f"the target's disk is full: {exc}") from exc
                raise

    def commit(self, mid: str, start: bool, restore: bool = False) -> CommitReply:
        received_at = time.time()
        s = self.s
        incoming = self._take(mid)
        with incoming.guard:
            rec, spec = incoming.rec, incoming.spec
            s.store.update_migration(mid, phase="committing")
            driver = s.instances.driver(rec.kind)
            hooks = migration_hooks(driver)
            template = s.instances.templates.get(rec.template)
            restore_s: float | None = None
            phases: dict[str, float] = {}
            if incoming.request.path == "live":
                resumed_at = hooks.finish_incoming(spec, _offer(incoming.request))
                state = State.RUNNING
                self._resumed(hooks, spec)
            else:
                hooks.adopt(spec, template)
                fault_point("migrate.target.adopted")  # all here (the dump too), nothing runs
                state = State.STOPPED
                resumed_at = time.time()
                images = spec.directory / CHECKPOINT_DIR
                if start and restore:  # a failure leaves it stopped: the source aborts
                    before = time.time()
                    resumed_at = hooks.restore(spec, template, images)
                    restore_s = criu_seconds(images, "restore")
                    phases = {BEFORE_RESTORE: round((before - received_at) * 1000, 1),
                              **read_phases(images, "restore")}
                    state = State.RUNNING
                elif start:
                    driver.start(spec, template)
                    state = State.RUNNING
                    resumed_at = time.time()
                shutil.rmtree(images, ignore_errors=True)
            fault_point("migrate.target.committing")  # adopted (and started), no row says so
            incoming.committed = True
            self._import_snapshots(incoming)
            s.instances.store.set_state(rec.id, state)
            s.instances.reservations.hand_over(rec.name, rec.id)  # in a cluster: ours now
            s.store.update_migration(mid, status=MigrationStatus.SUCCESS, phase="done")
            with self._guard:
                self._incoming.pop(mid, None)
            s.instances.ops.locks.release(rec.name, mid)
        plugging = time.monotonic()
        with contextlib.suppress(Exception):
            s.networks.plug_instance(rec.id)
        if phases:  # after the resume: nft rules and routes (the veth is on its bridge)
            phases["network plug (after)"] = round((time.monotonic() - plugging) * 1000, 1)
        s.events.publish("instance.migrated-in", instance=rec.name, id=rec.id,
                         source=incoming.request.source_node)
        if phases:
            phases[AFTER_RESUME] = round((time.time() - resumed_at) * 1000, 1)
        return CommitReply(state=state.value, resumed_at=resumed_at,
                           criu_restore_ms=None if restore_s is None
                           else round(restore_s * 1000, 1), restore_phases=phases,
                           received_at=received_at)

    @staticmethod
    def _resumed(hooks: MigrationHooks, spec: InstanceSpec) -> None:
        """The guest runs here (the commit cannot fail any more): the QMP settings."""
        try:
            hooks.after_resume(spec)
        except CorralError as exc:
            log.warning("re-applying IO limits/balloon to %s after migrating in: %s",
                        spec.name, exc.message)

    def _import_snapshots(self, incoming: Incoming) -> None:
        store, request = self.s.snapshot_store, incoming.request
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
                if self.s.store.get_migration(mid).status is MigrationStatus.SUCCESS:
                    raise Conflict(f"migration {mid} was committed here; it cannot be aborted")
            raise NotFound(f"no incoming migration '{mid}' on this host")
        with incoming.guard:
            if incoming.committed:
                raise Conflict(f"migration {mid} was committed here; it cannot be aborted")
            self.drop(incoming, reason)

    def expired(self, now: float) -> list[tuple[str, Incoming]]:
        """Reservations whose source has not been heard of for longer than their lease
        (and that no request is working on right now)."""
        with self._guard:
            return [(mid, inc) for mid, inc in self._incoming.items()
                    if not inc.committed and now - inc.last_seen > inc.lease
                    and not inc.guard.locked()]

    def drop(self, incoming: Incoming, reason: str) -> None:
        """Remove everything a reservation made: QEMU, NICs, files, row, lock."""
        s = self.s
        rec, spec = incoming.rec, incoming.spec
        driver = s.instances.driver(rec.kind)
        # Whatever a reservation may have made, in the order it makes them (run newest
        # first); each step is harmless where its part was never made.
        undo = Undo(log)
        undo.push("remove the instance row", lambda: s.instances.store.delete_instance(rec.id))
        undo.push("remove the instance directory",
                  lambda: shutil.rmtree(spec.directory, ignore_errors=True))
        undo.push("release the disks", lambda: s.instances.storage.release(spec))
        undo.push("delete the runtime's files", lambda: driver.delete(spec))
        undo.push("forget the snapshots", lambda: s.forget_snapshots(rec.id))
        undo.push("forget the NICs", lambda: s.networks.forget_instance(rec.id))
        undo.push("stop the incoming runtime", lambda: _stop_quietly(driver, spec))
        problems = undo.run()
        s.instances.ops.locks.release(rec.name, incoming.request.migration_id)
        with contextlib.suppress(NotFound):
            s.store.update_migration(
                incoming.request.migration_id, status=MigrationStatus.FAILURE, phase="aborted",
                error=reason + (f" (cleanup: {'; '.join(problems)})" if problems else ""),
            )
        log.warning("incoming migration %s of %s aborted: %s", incoming.request.migration_id,
                    rec.name, reason)


def _stop_quietly(driver: Driver, spec: InstanceSpec) -> None:
    """A runtime that cannot even be asked is left to ``delete``."""
    with contextlib.suppress(Exception):
        if driver.status(spec).state in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
            driver.stop(spec, force=True, timeout=0)
