"""Wiring: one object holding every service of a daemon, built from its configuration."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from corral.domain.errors import InvalidInput, NotFound
from corral.domain.instance import Kind
from corral.domain.users import Caller
from corral.drivers.base import Driver
from corral.host.ksm import KSM
from corral.services.audit import AuditService
from corral.services.authlimit import DEFAULT_LIMIT, DEFAULT_WINDOW, FailedAuthLimiter
from corral.services.capacity import CapacityService
from corral.services.capacity_case import CapacityCase
from corral.services.consoles import ConsoleHub
from corral.services.events import EventBus
from corral.services.host import HostService
from corral.services.instances import InstanceService
from corral.services.locks import InstanceLocks
from corral.services.networks import NetworkService, backend_for
from corral.services.operations import OperationManager
from corral.services.resources import ResourceService
from corral.services.sessions import DEFAULT_IDLE, DEFAULT_LIFETIME, SessionStore
from corral.services.storage import StorageService
from corral.services.templates import TemplateService
from corral.services.tickets import TicketService
from corral.services.users import UserService
from corral.state.auditstore import AuditStore
from corral.state.database import DATABASE_FILE, Database
from corral.state.netstore import NetworkStore
from corral.state.storagestore import StorageStore
from corral.state.store import InstanceRecord, OperationRecord, StateStore
from corral.state.userstore import UserStore


@dataclass(frozen=True)
class Settings:
    state_dir: Path = Path("/var/lib/corral")
    driver_mode: str = "real"  # "real": lxc + qemu; "fake": the fake driver for both kinds
    node: str = ""
    auth_failures: int = DEFAULT_LIMIT
    """Failed authentications (API tokens and console logins together) per address per
    ``auth_window`` seconds before that address is refused."""
    auth_window: float = DEFAULT_WINDOW
    session_idle: float = DEFAULT_IDLE
    """Seconds a console session lives without a request."""
    session_lifetime: float = DEFAULT_LIFETIME
    history_interval: float = 60.0  # seconds between the history sampler's readings; 0: off


def make_drivers(settings: Settings) -> dict[Kind, Driver]:
    if settings.driver_mode == "fake":
        from corral.drivers.fake.driver import FakeDriver

        return {Kind.CT: FakeDriver(Kind.CT), Kind.VM: FakeDriver(Kind.VM)}
    if settings.driver_mode == "real":
        from corral.drivers.lxc.driver import LxcDriver
        from corral.drivers.qemu.driver import QemuDriver

        return {Kind.CT: LxcDriver(settings.state_dir / "lxc"), Kind.VM: QemuDriver()}
    raise InvalidInput(f"driver mode '{settings.driver_mode}' is not one of: real, fake")


class Corral:
    def __init__(self, settings: Settings, drivers: dict[Kind, Driver] | None = None) -> None:
        self.settings = settings
        node = settings.node or socket.gethostname()
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database.open(settings.state_dir / DATABASE_FILE)  # migrated once, here
        self.store = StateStore(self.db)
        self.events = EventBus()
        self.consoles = ConsoleHub()
        self.tickets = TicketService()
        self.users = UserService(UserStore(self.db), SessionStore(
            self.db, idle=settings.session_idle, lifetime=settings.session_lifetime))
        self.auth_limiter = FailedAuthLimiter(settings.auth_failures, settings.auth_window)
        self.audit = AuditService(AuditStore(self.db))
        self.locks = InstanceLocks()
        self.operations = OperationManager(self.store, self.events, self.locks)
        self.templates = TemplateService(settings.state_dir / "templates", self.events,
                                         self.operations)
        self.host = HostService(
            settings.state_dir, node, settings.driver_mode, self._probe_kernel
        )
        self.instances = InstanceService(
            self.store, self.operations, self.events, self.templates,
            drivers if drivers is not None else make_drivers(settings),
            settings.state_dir / "instances", node,
        )
        self.capacity = CapacityService(
            self.store, settings.state_dir / "instances",
            settings.state_dir / "capacity-policy.json",
            # a fake-driver daemon leaves the host's kernel be: its KSM is a directory of
            # its own (absent: "no KSM")
            ksm_root=settings.state_dir / "fake-ksm" if settings.driver_mode == "fake"
            else KSM,
        )
        self.instances.admission = self.capacity.admit
        vm_driver = self.instances.drivers.get(Kind.VM)
        if vm_driver is not None and hasattr(vm_driver, "launch_priority"):  # QEMU's
            vm_driver.launch_priority = lambda: self.capacity.policy().vm_launch_priority
        self.store.id_quarantine = lambda: self.capacity.policy().quarantine
        self.resources = ResourceService(
            self.instances, self.capacity, self.events, nic_devices=self._nic_devices,
            all_nic_devices=self._all_nic_devices,
        )
        self.capacity_case = CapacityCase(self.capacity, self.resources.usage_all,
                                          self.resources.vm_memory_overhead)
        self.networks = NetworkService(
            NetworkStore(self.db),
            backend_for(settings.driver_mode, settings.state_dir), self.instances, self.events,
        )
        self._wire_storage(settings)
        self._wire_backups(settings)
        self._wire_migration(settings, node)
        self._wire_history(settings)
        self._wire_cluster(settings, node)
        self._wire_bulk()

    def _wire_history(self, settings: Settings) -> None:
        from corral.services.history import HistorySampler, read_all
        from corral.state.historystore import HistoryStore

        self.history = HistorySampler(
            HistoryStore(self.db), lambda: read_all(self.resources, self.networks),
            interval=settings.history_interval,
        )

        def forget(rec: InstanceRecord) -> None:
            self.history.forget(rec.id)

        self.instances.on_deleted.append(forget)
        self.audit.retention = lambda: self.capacity.policy().audit_limits
        self.history.hourly.append(self.audit.prune)

    def _wire_cluster(self, settings: Settings, node: str) -> None:
        from corral.cluster.store import NodeInfo
        from corral.services.cluster import ClusterService, default_facts

        facts = default_facts(
            self.capacity.report, self.host.features,
            lambda: [p.config.name for p in self.storage.list_pools()],
            lambda: len(self.store.list_instances()),
            lambda: sorted(k.value for k in self.instances.drivers),
        )
        self.cluster = ClusterService(
            settings.state_dir, node, self.store, self.events, facts,
            lambda: self.capacity.policy().quarantine,
        )

        def node_info() -> NodeInfo:
            identity = self.remotes.identity
            return NodeInfo(node, self.remotes.advertise_url, identity.fingerprint,
                            identity.cert_pem)

        self.cluster.node_info = node_info
        self.cluster.forwarder.user = self._user_caller
        self.remotes.member = self.cluster.member_remote
        self.migrations.check_target = self.cluster.check_move
        from corral.services.groups import GroupService

        self.groups = GroupService(lambda: self.cluster.store)
        self.instances.reservations = self.cluster
        self._wire_template_share(node)

    def _wire_template_share(self, node: str) -> None:
        from corral.services.template_share import TemplateShare

        cluster = self.cluster
        self.template_share = TemplateShare(node, self.templates, lambda: cluster.store,
                                            cluster.members, cluster.forwarder)
        self.templates.on_changed.append(self.template_share.changed)
        self.templates.fetch = self.template_share.fetch
        cluster.on_reconcile.append(self.template_share.publish_all)
        cluster.placer.holders = self.template_share.holders

    def _user_caller(self, name: str) -> Caller | None:
        """This host's user ``name`` as a request's identity (forwarded requests)."""
        try:
            found = self.users.store.get(name)
        except NotFound:
            return None
        return Caller(found.name, found.role)

    def _wire_bulk(self) -> None:
        from corral.services.bulk import BulkService, CreateSpec
        from corral.services.bulk_cluster import ClusterRunner
        from corral.services.bulk_local import LocalRunner
        from corral.services.evacuation import Evacuation
        from corral.services.labels import LabelService
        from corral.services.placement import move_ask
        from corral.wire.migration import MigrateRequest

        self.labels = LabelService(self.store, self.events)
        runner = LocalRunner(self.instances, self.snapshots, self.backups)
        cluster = self.cluster
        self.bulk = BulkService(self.store, self.operations, ClusterRunner(
            runner, cluster.is_local, cluster.forwarder, lambda: cluster.store,
            self.operations.cancel_requested))
        self.bulk.elsewhere = lambda ref: cluster.forwarder.target(ref) is not None
        self.bulk.others = cluster.remote_instances
        self.evacuation = Evacuation(self.cluster.node, self.cluster.state_dir, self.cluster,
                                     self.migrations, self.operations)

        def migrate(name: str, target: str | None) -> OperationRecord:
            if target is None or target == "auto":  # placement picks (`migrate … auto`)
                rec = self.store.get_instance(name)
                target = self.cluster.placer.pick(move_ask(rec), self.cluster.node, rec.name)
            return self.migrations.migrate(name, MigrateRequest(target=target, together=True))

        runner.migrate = migrate

        def check_create(spec: CreateSpec) -> None:
            self.instances.driver(Kind.parse(spec.kind))
            try:
                self.templates.get(spec.template)
            except NotFound:  # another member's: fetched at the first create here
                if not self.template_share.holders(spec.template):
                    raise

        self.bulk.check_create = check_create

    def _nic_devices(self, ref: str) -> list[str]:
        return [nic.host_ifname for _name, nic in self.networks.list_nics(ref)]

    def _all_nic_devices(self) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for nic in self.networks.store.list_nics():
            found.setdefault(nic.instance_id, []).append(nic.host_ifname)
        return found

    def _wire_migration(self, settings: Settings, node: str) -> None:
        from corral.services.migration import MigrationService
        from corral.services.remotes import RemoteService
        from corral.state.migstore import MigrationStore

        store = MigrationStore(self.db)
        self.remotes = RemoteService(store, settings.state_dir / "tls", node)
        self.migrations = MigrationService(
            store, self.instances, self.networks, self.remotes, self.events
        )
        self.migrations.snapshot_store = self.snapshots.store
        self.instances.start_guards.append(self.migrations.resolver.check_start)

    def _wire_backups(self, settings: Settings) -> None:
        from corral.drivers.snapshots import SnapshotHooks
        from corral.services.backup_restore import RestoreService
        from corral.services.backup_schedule import BackupScheduler, BackupSchedules
        from corral.services.backups import BackupService
        from corral.services.snapshots import SnapshotService
        from corral.state.backupstore import BackupStore

        hooks: dict[Kind, SnapshotHooks] = {}
        for kind, driver in self.instances.drivers.items():
            found = driver.hooks().snapshots  # None: no snapshots for that kind
            if found is not None:
                hooks[kind] = found
        store = BackupStore(self.db)
        self.snapshots = SnapshotService(self.instances, store, hooks, self.storage, self.disks)
        self.backups = BackupService(
            self.instances, store, hooks, settings.state_dir / "backup-scratch"
        )
        self.backups.networks = self.networks
        self.restores = RestoreService(self.backups, self.disks, self.networks)
        self.schedules = BackupSchedules(self.backups)
        self.backup_schedule = BackupScheduler(self.schedules)

        def forget(rec: InstanceRecord) -> str | None:  # a new instance reusing the id or
            store.forget_instance(rec.id)                # name must not inherit them
            return self.schedules.forget(rec.name)

        self.instances.on_deleted.append(forget)

    def _wire_storage(self, settings: Settings) -> None:
        from corral.services.convert import ConvertService
        from corral.services.disks import DiskService

        self.storage = StorageService(
            StorageStore(self.db), settings.state_dir,
            settings.driver_mode, self.events,
        )
        self.instances.storage = self.storage
        self.templates.users = lambda name: [
            r.name for r in self.store.list_instances() if r.template == name
        ]
        self.templates.on_removed.append(self.storage.drop_bases)
        self.convert = ConvertService(self.instances, self.storage, self.networks)
        self.capacity.data_disks = self.storage.store.data_disk_bytes
        self.disks = DiskService(self.instances, self.storage, self.events,
                                 admit=self.capacity.admit_disk)

    def _probe_kernel(self) -> Path | None:
        """A kernel to probe KVM with: the first installed template's."""
        for image in self.templates.list():
            if image.kernel.exists():
                return image.kernel
        return None

    def start(self) -> None:
        """Fail what a killed daemon left running and re-adopt the guests."""
        self.operations.fail_orphans()
        self.storage.setup()  # pools first: instances' disks live there
        self.backups.sweep_scratch()
        self.migrations.recover()  # before reconcile: it knows the half-migrated rows
        self.instances.reconcile()
        self.storage.sweep_volumes({
            rec.id: {snap.id for snap in self.snapshots.store.snapshots(rec.id)}
            for rec in self.store.list_instances()})
        self.networks.start()
        self.backup_schedule.start()
        self.capacity.apply_ksm()
        self.history.start()
        self.cluster.start()

    def close(self) -> None:
        self.consoles.close()
        self.cluster.close()
        self.history.stop()
        self.backup_schedule.stop()
        self.migrations.close()
        self.networks.close()
        self.operations.shutdown()
        self.storage.close()
        for driver in self.instances.drivers.values():
            close = getattr(driver, "close", None)  # drivers that hold watches (lxc)
            if close is not None:
                close()
