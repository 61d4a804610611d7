"""``MigrationService``: the one object the API and the daemon talk to. It holds what both
sides share (stores, services, the snapshot rows) and hands each request to its side:
``source`` (an outgoing run), ``target`` (incoming reservations) and ``recovery`` (the lease
watchdog and the roll-back at daemon start)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from corral.domain.errors import Conflict, HostFailure, NotFound
from corral.domain.lifecycle import State
from corral.domain.statuses import MigrationStatus
from corral.drivers.migration import StreamTls, migration_hooks
from corral.host.tls import cert_name
from corral.services.events import EventBus
from corral.services.instances import InstanceService
from corral.services.migration import recovery, resolve
from corral.services.migration.source import SourceRun, Unresolved, choose_path
from corral.services.migration.target import TargetSide
from corral.services.networks import NetworkService
from corral.services.operations import OperationContext
from corral.services.remotes import RemoteService
from corral.state.migstore import MigrationRecord, MigrationStore
from corral.state.store import OperationRecord
from corral.wire.migration import CommitReply, IncomingReply, IncomingRequest, MigrateRequest

if TYPE_CHECKING:
    from corral.state.backupstore import BackupStore


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
        self.target = TargetSide(self)
        self.watchdog = recovery.LeaseWatchdog(self.target)
        self.resolver = resolve.Resolver(self)
        """Unresolved migrations (the target unreachable after the commit was asked)."""
        self.snapshot_store: BackupStore | None = None
        """Snapshot rows (services/snapshots); they move with the instance."""
        self.check_target: Callable[[str, str, bool], None] = lambda _n, _t, _together: None
        """Refuses a target member the instance's placement group forbids (core wires
        ``ClusterService.check_move``)."""

    def stream_tls(self, peer_cert_pem: str) -> StreamTls:
        """TLS for the runtime's own streams with the peer whose certificate is pinned."""
        identity = self.remotes.identity
        return StreamTls(identity.cert, identity.key, peer_cert_pem, cert_name(peer_cert_pem))

    # ================================ source ==========================================

    def migrate(self, ref: str, request: MigrateRequest) -> OperationRecord:
        view = self.instances.get(ref)
        rec = view.record
        self.resolver.check_start(rec, "migrate")
        if view.state not in (State.RUNNING, State.STOPPED):
            raise Conflict(f"'{rec.name}' is {view.state.value}; migrate a running or "
                           "stopped instance")
        self.check_target(rec.name, request.target, request.together)
        remote = self.remotes.get(request.target)
        driver = self.instances.driver(rec.kind)
        running = view.state is State.RUNNING
        path, why = choose_path(rec.kind, migration_hooks(driver), running, request.mode,
                                self.instances.spec(rec))
        mid = str(uuid.uuid4())

        def work(ctx: OperationContext) -> None:
            self.store.insert_migration(MigrationRecord(
                id=mid, direction="out", instance=rec.name, instance_id=rec.id,
                kind=rec.kind.value, peer=remote.name, path=path, status=MigrationStatus.RUNNING,
                phase="preparing", operation=ctx.id,
                details={"why": why, "was_running": running, "target_url": remote.url},
            ))
            try:
                SourceRun(self, ctx, mid, rec, remote.name, path, request, running).run()
            except Unresolved as exc:
                resolve.mark(self, self.store.get_migration(mid), exc.why)
                raise HostFailure(f"{exc.message}: '{rec.name}' is kept stopped here until "
                                  f"{remote.name} answers (corral migration resolve "
                                  f"{rec.name} --keep-source|--keep-target decides "
                                  "without it)") from exc

        return self.instances.ops.submit("migrate", rec.name, work)

    def get(self, ref: str) -> MigrationRecord:
        try:
            return self.store.get_migration(ref)
        except NotFound:
            return self.store.find_by_operation(ref)

    # ================================ target ==========================================

    def reserve(self, request: IncomingRequest, local_host: str) -> IncomingReply:
        reply = self.target.reserve(request, local_host)
        self.watchdog.ensure()
        return reply

    def heartbeat(self, mid: str) -> None:
        self.target.heartbeat(mid)

    def status(self, mid: str) -> MigrationRecord:
        return self.target.status(mid)

    def receive_disk(self, mid: str, body: bytes, file: str | None = None,
                     size: int = 0) -> int:
        return self.target.receive_disk(mid, body, file, size)

    def receive_files(self, mid: str, body: bytes) -> None:
        self.target.receive_files(mid, body)

    def commit(self, mid: str, start: bool, restore: bool = False) -> CommitReply:
        return self.target.commit(mid, start, restore)

    def abort(self, mid: str, reason: str) -> None:
        self.target.abort(mid, reason)

    # ================================ both ============================================

    def forget_snapshots(self, instance_id: int) -> None:
        if self.snapshot_store is not None:
            self.snapshot_store.forget_instance(instance_id)

    def recover(self) -> None:
        """Before instances are reconciled: roll back what a killed corrald left mid-way."""
        recovery.recover(self)
        if self.store.unresolved():
            self.resolver.ensure()

    def resolve(self, ref: str, keep: str) -> MigrationRecord:
        """An admin's decision on an unresolved migration of instance ``ref``."""
        return self.resolver.force(ref, keep)

    def close(self) -> None:
        self.watchdog.close()
        self.resolver.close()
