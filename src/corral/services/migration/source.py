"""The source side of a migration: one outgoing run inside its Operation.

An Operation holding the instance's lock drives the phases against the target corrald over
TLS: reserve → (VM live: NBD mirror → RAM pre-copy → switch-over | copy: disk pre-copy →
stop → final delta → files) → commit → clean up the source. Every step that changed
something pushes its undo; a failure or a cancel in any phase before the commit runs the undo
stack (the target drops everything, the source runs again as before).

The commit is the single point of no return and only the source decides it: the source
records "committing" before asking, the target records success only after the guest runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.domain.errors import CheckpointRefused, CorralError, HostFailure, InvalidInput
from corral.domain.instance import Kind
from corral.domain.statuses import MigrationStatus
from corral.domain.undo import Undo, describe
from corral.drivers.base import RuntimeState
from corral.drivers.migration import (
    CHECKPOINT_DIR,
    LiveEndpoints,
    LiveOffer,
    LiveSource,
    MigrationPath,
    criu_seconds,
    migration_hooks,
    read_phases,
    without_criu,
)
from corral.migration.files import files_size, instance_files, snapshot_files
from corral.migration.frames import Frame
from corral.migration.peer import PeerClient, PeerError, env_float
from corral.migration.transfer import DiskCopier, Throttle, allocated_bytes
from corral.services.faults import fault_point
from corral.services.operations import Cancelled, OperationContext
from corral.state.store import InstanceRecord
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
    from corral.domain.instance import InstanceSpec
    from corral.drivers.migration import MigrationHooks
    from corral.services.migration.service import MigrationService

log = logging.getLogger("corral.migration")

PRECOPY_ROUNDS = 3
PRECOPY_CONVERGED = 4 * 1024 * 1024  # a pre-copy round this small is as good as it gets


def lease_seconds() -> float:
    return env_float("CORRAL_MIGRATION_LEASE", 15.0)


def choose_path(kind: Kind, hooks: MigrationHooks, running: bool,
                mode: str, spec: InstanceSpec | None = None) -> tuple[MigrationPath, str]:
    """(path, why) for an instance of ``kind`` that is ``running`` or not (``spec``: the
    instance, for a driver that checkpoints some instances and not others)."""
    if not running:
        return MigrationPath.OFFLINE, "the instance is stopped: its disk and files are copied"
    if mode == "offline":
        return MigrationPath.OFFLINE, "asked for --offline: stop, copy, start on the target"
    if MigrationPath.LIVE in hooks.paths:
        return MigrationPath.LIVE, hooks.why(MigrationPath.LIVE)
    if mode == "live" and kind is Kind.VM:
        raise InvalidInput("live migration of a VM needs the QEMU driver")
    if MigrationPath.CHECKPOINT in hooks.paths and spec is not None:
        refused = hooks.checkpoint_refusal(spec)
        if refused is None:
            return MigrationPath.CHECKPOINT, hooks.why(MigrationPath.CHECKPOINT)
        return MigrationPath.PRECOPY, without_criu(refused)
    return MigrationPath.PRECOPY, hooks.why(MigrationPath.PRECOPY)


def remove_source(service: MigrationService, rec: InstanceRecord) -> None:
    """After the commit (or found committed at start): the instance is gone from here."""
    spec = service.instances.spec(rec)
    driver = service.instances.driver(rec.kind)
    if driver.status(spec).state in (RuntimeState.RUNNING, RuntimeState.SUSPENDED):
        driver.stop(spec, force=True, timeout=0)
    with contextlib.suppress(CorralError):
        service.networks.forget_instance(rec.id)
    driver.delete(spec)
    service.instances.storage.release(spec)
    shutil.rmtree(spec.directory, ignore_errors=True)
    service.instances.store.delete_instance(
        rec.id, retire=not service.instances.reservations.ids_shared())
    service.forget_snapshots(rec.id)


class Unresolved(HostFailure):
    """The commit was asked and its outcome cannot be learnt (``why``: the target's
    silence): the source neither rolls back nor goes forward (services/migration/resolve)."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


class SourceRun:
    """One outgoing migration, run inside its Operation."""

    def __init__(self, service: MigrationService, ctx: OperationContext, mid: str,
                 rec: InstanceRecord, remote: str, path: MigrationPath,
                 request: MigrateRequest,
                 running: bool) -> None:
        self.s = service
        self.ctx = ctx
        self.mid = mid
        self.rec = rec
        self.spec = service.instances.spec(rec)
        self.driver = service.instances.driver(rec.kind)
        self.hooks = migration_hooks(self.driver)
        self.remote = service.remotes.get(remote)
        self.path = path
        self.request = request
        self.running = running
        self.undo = Undo(log)
        """Until the commit: how to take back each step (the target's reservation, a stopped
        or half-moved source); discarded once the target committed."""
        self.started = time.monotonic()
        self.details: dict[str, Any] = {}
        self.committing = False
        self._hb_stop = threading.Event()
        self.offer = LiveOffer()
        """Live: what the target's runtime must match, with the data disks the running guest
        has (mirrored); the others wait for the next start, nobody writes them, and they
        move as files with the snapshots'."""
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
            fault_point("migrate.source.after_reserve")
            lease = lease_seconds()
            heartbeat = threading.Thread(target=self._heartbeat, args=(peer, lease / 4),
                                         daemon=True, name="migration-heartbeat")
            heartbeat.start()
            live = self.path is MigrationPath.LIVE
            commit = self._live(peer, reply) if live else self._copy(peer)
            self.details["id"] = reply.id
            self._finish(commit)
        except Unresolved:  # neither back nor forward: the service marks it
            self.undo.discard()
            raise
        except BaseException as exc:
            self._rollback(exc)
            raise
        finally:
            self._hb_stop.set()
            if heartbeat is not None:
                heartbeat.join(5)
            peer.close()

    def _reserve(self, peer: PeerClient) -> IncomingReply:
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
        if self.path is MigrationPath.LIVE:
            self.offer = dataclasses.replace(self.hooks.live_offer(self.spec),
                                             tls=self.s.stream_tls(self.remote.cert_pem))
        pending = self.s.instances.storage.pending_sizes(self.rec.id)
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
            path="live" if self.path is MigrationPath.LIVE else "copy",
            idmap_start=self.hooks.idmap_start(self.spec),
            lease_seconds=lease_seconds(), snapshots=snapshots,
            snapshot_head=head if any(s.id == head for s in snapshots) else None,
            data_disks=data_disks, boot_memory=self.offer.boot_memory,
            live_disks=None if self.offer.disks is None else list(self.offer.disks),
            source_cert=self.s.remotes.identity.cert_pem
            if self.path is MigrationPath.LIVE else None,
        )
        self.phase(0.02, f"reserving '{self.rec.name}' on {self.remote.name}")
        reply = peer.reserve(request)
        self.undo.push("drop the reservation on the target",
                       lambda: peer.abort(self.mid, "the source rolled back"))
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
        # Data disks the running guest does not have are not written: they move as files.
        live = self.offer.disks
        self.side_files += [(f"{d.name}.img", d.path) for d in self.spec.data_disks
                            if live is not None and d.name not in live]
        if self.side_files:
            self.phase(0.03, "sending snapshots and unattached disks")
            self._send_side_files(peer, 0.03, 0.05)

        assert reply.nbd_host and reply.nbd_port and reply.nbd_export and reply.migrate_uri
        if not reply.stream_tls:  # an older target: it would take the guest in clear text
            raise HostFailure(f"target '{self.remote.name}' does not encrypt the VM's disk and "
                              "RAM streams (an older Corral?): upgrade it first")
        exports = reply.nbd_exports or {"root": reply.nbd_export}  # an older target: root
        ends = LiveEndpoints(reply.nbd_host, reply.nbd_port, exports, reply.migrate_uri)
        source = self.hooks.live_source(self.spec, self.offer)
        self.undo.push("resume the source guest", lambda: self._live_undo(source))
        bandwidth = self.request.bandwidth
        source.mirror(ends, bandwidth, lambda f, text: self.phase(0.05 + 0.5 * f, text))
        self.phase(0.55, "sending the instance's files")
        peer.send_files(self.mid, instance_files(self.spec.directory))
        source.migrate(ends, bandwidth, self.request.downtime_ms,
                       lambda f, text: self.phase(0.56 + 0.39 * f, text))
        self.check()
        # The source is stopped now: from here on, speed is downtime.
        self.committing = True
        source.release_disk()
        self.s.store.update_migration(self.mid, phase="committing")
        try:
            commit = self._commit(peer, start=True)
        except Unresolved:
            source.close()  # (its QMP connection: the unresolved mark takes QEMU over)
            raise
        r = source.stats()
        self.details.update({
            "downtime_ms": round((commit.resumed_at - r.stopped_at) * 1000, 1)
            if r.stopped_at else None,
            "resumed_at": round(commit.resumed_at, 4),  # wall clock: lines up with logs
            "qemu_downtime_ms": r.runtime_downtime_ms, "disk_bytes": r.disk_bytes,
            "ram_bytes": r.ram_bytes,
        })
        source.close()
        return commit

    def _live_undo(self, source: LiveSource) -> None:
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

        def rnd(lo: float, hi: float, label: str, quiet: bool = False) -> int:
            sent = 0
            for copier in copiers:
                report = (lambda _done: None) if quiet else self._reporter(
                    lo, hi, label, sent, disk_bytes)
                sent += copier.round(report, self.check, throttle)
            return sent

        moving = (MigrationPath.PRECOPY, MigrationPath.CHECKPOINT)
        if self.running and self.path in moving:
            for attempt in range(PRECOPY_ROUNDS):
                sent = rnd(0.05, 0.7, f"disk pre-copy (round {attempt + 1}, running)")
                sent_total += sent
                if attempt > 0 and sent <= PRECOPY_CONVERGED:
                    break
        self.check()
        if self.running and self.path is MigrationPath.CHECKPOINT:
            self._trial_checkpoint()
        stopped_at = time.time()
        restore = self.running and self.path is MigrationPath.CHECKPOINT
        if restore:
            self.phase(0.72, "checkpointing the instance on the source (CRIU dump)")
            self.s.store.update_migration(self.mid, details={"stopped": True})
            images = self.spec.directory / CHECKPOINT_DIR
            self.undo.push("restore the source from its checkpoint", self._restore_source)
            # the bookkeeping above and this run while the instance does: not downtime
            self.hooks.before_checkpoint(self.spec)
            stopped_at = time.time()
            restore = self._stopping_checkpoint(images)
            if restore:
                self.details["dump_ms"] = round((time.time() - stopped_at) * 1000, 1)
                dumped = criu_seconds(images, "dump")
                self.details["criu_dump_ms"] = (None if dumped is None
                                                else round(dumped * 1000, 1))
                self.details["dump_phases"] = read_phases(images, "dump")
        if self.running and not restore:
            self.phase(0.72, "stopping the instance on the source")
            self.s.store.update_migration(self.mid, details={"stopped": True})
            self.undo.push("start the source again", self._restart_source)
            self.driver.stop(self.spec, force=False, timeout=10.0)
        if restore:
            # no progress rows for the final delta: each is three database writes in the
            # downtime (the files' thread says what is being sent)
            final = self._send_checkpoint(
                peer, lambda: rnd(0.75, 0.9, "final disk delta", quiet=True))
        else:
            final = rnd(0.75, 0.9, "final disk delta (stopped)")
        sent_total += final
        if not restore:
            self.phase(0.9, "sending the instance's files")
            peer.send_files(self.mid, instance_files(self.spec.directory))
        self.check()
        fault_point("migrate.source.before_commit")  # stopped here, all sent, not committed
        self.committing = True
        self.phase(0.93, (f"restoring on {self.remote.name}" if restore else
                          f"starting on {self.remote.name}") if self.running else "committing")
        # last: the recorded phase is what a restarted source's recovery goes by
        self.s.store.update_migration(self.mid, phase="committing")
        asked = time.time()
        commit = self._commit(peer, start=self.running, restore=restore)
        if restore:
            self.details["send_ms"] = round(
                (asked - stopped_at) * 1000 - self.details["dump_ms"], 1)
            self.details["commit_ms"] = round((time.time() - asked) * 1000, 1)
            self.details.update(_commit_parts(asked, commit))
            self.details["criu_restore_ms"] = commit.criu_restore_ms
            self.details["restore_phases"] = commit.restore_phases
        self.details.update({
            "disk_bytes": sent_total, "final_delta_bytes": final,
            "downtime_ms": round((commit.resumed_at - stopped_at) * 1000, 1)
            if self.running else None,
        })
        return commit

    def _send_checkpoint(self, peer: PeerClient, final_round: Callable[[], int]) -> int:
        """The dump and the instance's files (one tar) go on a thread of their own while the
        stopped instance's disk images are made whole and left alone (``quiesce``) and the
        final disk delta, which must wait for that, is read and sent: two requests at once
        on the peer's connection pool (the heartbeat is a third). The bytes of the delta."""
        failed: list[BaseException] = []

        def send_files() -> None:
            began = time.time()
            try:
                self.phase(0.75, "sending the checkpoint, the instance's files and the "
                           "final disk delta")
                peer.send_files(self.mid, instance_files(self.spec.directory))
            except BaseException as exc:  # raised on the migration's thread, below
                failed.append(exc)
            self.details["files_ms"] = round((time.time() - began) * 1000, 1)

        sender = threading.Thread(target=send_files, daemon=True, name="migration-files")
        sender.start()
        try:
            began = time.time()
            how, phases = self.hooks.quiesce(self.spec)
            self.details.update({"quiesced": how, "quiesce_phases": phases})
            self.details["settle_ms"] = round((time.time() - began) * 1000, 1)
            began = time.time()
            final = final_round()
            self.details["delta_ms"] = round((time.time() - began) * 1000, 1)
        finally:
            sender.join()
        if failed:
            raise failed[0]
        return final

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

    def _trial_checkpoint(self) -> None:
        """Dump the running instance once, leaving it running, before anything is stopped:
        what CRIU cannot dump (a process attached from outside, …) makes the move fall back
        to the restart path with CRIU's own words, not fail after the stop."""
        if self.hooks.dumped_recently(self.spec):
            self.details["trial"] = "skipped: a trial dump of this run passed recently"
            return
        self.phase(0.71, "trial checkpoint (CRIU dump, the instance runs on)")
        trial = self.spec.run_dir / "checkpoint-trial"
        try:
            self.hooks.checkpoint(self.spec, trial, stop=False)
        except CorralError as exc:
            self._fall_back(exc)
        finally:
            shutil.rmtree(trial, ignore_errors=True)

    def _stopping_checkpoint(self, images: Path) -> bool:
        """The dump that stops the instance; whether it was taken. The move falls back to
        the restart path, as a failed trial dump does, when the driver refused before
        dumping (``CheckpointRefused``: a process came since the trial that the checkpoint
        would lose), or when the dump failed with the instance still running, unchanged,
        and this move skipped its trial dump (a recent verdict): a process CRIU cannot dump
        came since. Anything else propagates."""
        try:
            self.hooks.checkpoint(self.spec, images, stop=True)
            return True
        except CorralError as exc:
            trial = str(self.details.get("trial", ""))
            if not isinstance(exc, CheckpointRefused) and (
                    not trial.startswith("skipped")
                    or self.driver.status(self.spec).state is not RuntimeState.RUNNING):
                raise
            self.undo.pop()  # nothing was stopped: no restore to take back
            shutil.rmtree(images, ignore_errors=True)
            self._fall_back(exc)
            return False

    def _fall_back(self, refused: CorralError) -> None:
        """CRIU cannot dump the instance, which still runs: the move takes the restart path,
        with CRIU's words as the reason."""
        self.path = MigrationPath.PRECOPY
        why = without_criu(f"CRIU cannot dump it: {refused.message}")
        self.details["why"] = why
        self.s.store.update_migration(self.mid, path=self.path, details={"why": why})
        log.info("migration %s of %s: %s", self.mid, self.rec.name, why)

    def _restore_source(self) -> None:
        """Undo a checkpointing stop: the processes go on from the dump here (else the
        instance starts again)."""
        images = self.spec.directory / CHECKPOINT_DIR
        template = self.s.instances.templates.get(self.rec.template)
        try:
            if self.driver.status(self.spec).state is RuntimeState.STOPPED:
                self.hooks.settle(self.spec)  # the dump may have returned before the release
                self.hooks.restore(self.spec, template, images)
        except CorralError as exc:
            log.warning("restoring %s from its checkpoint failed (%s): starting it",
                        self.rec.name, exc.message)
            self._restart_source()
        finally:
            shutil.rmtree(images, ignore_errors=True)

    def _commit(self, peer: PeerClient, start: bool, restore: bool = False) -> CommitReply:
        """Ask the target to commit. Once it did, nothing here is taken back: the instance
        lives there (a later failure leaves the source's copy to clean up, not to restart)."""
        reply = self._ask_commit(peer, start, restore)
        self.undo.discard()
        return reply

    def _ask_commit(self, peer: PeerClient, start: bool, restore: bool = False) -> CommitReply:
        try:
            return peer.commit(self.mid, start, restore)
        except CorralError as first:
            # Did the target commit although the answer was lost? Only then go forward.
            try:
                status = peer.status(self.mid)
            except CorralError as asked:
                raise Unresolved(f"the target failed at the commit ({first.message}) and "
                                 f"cannot be asked whether it committed ({asked.message})",
                                 asked.message) from first
            if status.get("status") == MigrationStatus.SUCCESS:
                return CommitReply(state="running" if start else "stopped",
                                   resumed_at=time.time())
            if (status.get("status") == MigrationStatus.RUNNING
                    and not isinstance(first, PeerError)):  # no answer: still at it there?
                raise Unresolved(f"the commit failed here ({first.message}) while the target "
                                 "is still committing", "the target is still committing"
                                 ) from first
            self.committing = False
            raise

    def _finish(self, commit: CommitReply) -> None:
        fault_point("migrate.source.after_commit")  # runs there, the source not cleaned up
        self.phase(0.96, "cleaning up the source")
        self.s.store.update_migration(self.mid, phase="cleaning up")
        remove_source(self.s, self.rec)
        total_ms = round((time.monotonic() - self.started) * 1000, 1)
        self.details.update({"total_ms": total_ms, "target_state": commit.state})
        self.s.store.update_migration(self.mid, status=MigrationStatus.SUCCESS, phase="done",
                                      details=self.details)
        self.s.events.publish("instance.migrated", instance=self.rec.name,
                              target=self.remote.name, path=self.path, **{
                                  k: v for k, v in self.details.items()
                                  if k in ("downtime_ms", "total_ms")})

    def _rollback(self, exc: BaseException) -> None:
        problems = self.undo.run()
        status = (MigrationStatus.CANCELLED if isinstance(exc, Cancelled)
                  else MigrationStatus.FAILURE)
        error = describe(exc)
        if problems:
            error += " (rollback: " + "; ".join(problems) + ")"
        with contextlib.suppress(CorralError):
            self.s.store.update_migration(self.mid, status=status, phase="rolled back",
                                          error=error, details=self.details)
        log.warning("migration %s of %s rolled back: %s", self.mid, self.rec.name, error)


def _commit_parts(asked: float, commit: CommitReply) -> dict[str, float]:
    """The commit round trip by part (ms): the request's way to the target's handler, and
    asked -> resumed there (the downtime's share of it). Wall clocks of two hosts, as the
    downtime itself; {} from a target that does not say when the request arrived."""
    if commit.received_at is None:
        return {}
    return {"commit_wire_ms": round((commit.received_at - asked) * 1000, 1),
            "commit_resumed_ms": round((commit.resumed_at - asked) * 1000, 1)}
