"""Every record type written to a real (migrated) SQLite database and read back equal: the
one mapper of each table, both ways."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from corral.domain.instance import Kind
from corral.domain.lifecycle import State
from corral.domain.network import (
    BandwidthRule,
    Direction,
    NetworkSpec,
    NetworkType,
    NicSpec,
    TrafficClass,
)
from corral.domain.pools import PoolConfig
from corral.domain.resources import Resources
from corral.domain.statuses import MigrationStatus, OperationStatus
from corral.domain.users import Role
from corral.state.backupstore import BackupStore, ScheduleRecord, SnapshotRecord, TargetRecord
from corral.state.database import Database, from_sql_datetime, to_sql_datetime
from corral.state.migstore import MigrationRecord, MigrationStore, RemoteRecord
from corral.state.netstore import CounterRecord, NetworkStore
from corral.state.storagestore import DiskRecord, PoolRecord, StorageStore
from corral.state.store import StateStore
from corral.state.userstore import UserStore

WHEN = datetime(2026, 12, 6, 3, 4, 5, 678901)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database.open(tmp_path / "corral.db")


def test_the_date_format_is_sqlalchemys_and_reads_both_forms() -> None:
    assert to_sql_datetime(WHEN) == "2026-12-06 03:04:05.678901"
    assert from_sql_datetime("2026-12-06 03:04:05.678901") == WHEN
    assert from_sql_datetime("2026-12-06 03:04:05") == WHEN.replace(microsecond=0)


def test_instance(db: Database) -> None:
    store = StateStore(db, clock=lambda: WHEN)
    UserStore(db).add("bob", Role.OWNER, "h" * 64)
    resources = Resources(cpus=2, memory=256 << 20, disk=1 << 30, cpu_limit=50,
                          cpu_pin="0-1", io_read_bps=1000)
    made = store.insert_instance("web", Kind.VM, "tiny", resources, True, "n1", 101,
                                 owner="bob")
    assert made.created_at == WHEN and made.state is State.CREATING
    assert store.get_instance("web") == made == store.get_instance("101")
    store.set_state(made.id, State.RUNNING)
    store.set_kind(made.id, Kind.CT)
    bigger = replace(resources, memory=512 << 20)
    store.set_resources(made.id, bigger)
    store.set_owner(made.id, None)
    assert store.list_instances() == [replace(made, state=State.RUNNING, kind=Kind.CT,
                                              resources=bigger, owner=None)]


def test_an_unchanged_row_lists_as_the_same_record(db: Database) -> None:
    """``list`` of many builds no new record for a row that did not change, and a change of
    any column gives a new one."""
    store = StateStore(db, clock=lambda: WHEN)
    one = store.insert_instance("a", Kind.CT, "tiny", Resources(), False, "n1", 101)
    store.insert_instance("b", Kind.CT, "tiny", Resources(), False, "n1", 102)
    first = store.list_instances()
    again = store.list_instances()
    assert all(x is y for x, y in zip(first, again, strict=True))
    store.set_state(one.id, State.RUNNING)
    after = store.list_instances()
    assert after[0] is not first[0] and after[0].state is State.RUNNING
    assert after[1] is first[1]


def test_operation(db: Database) -> None:
    store = StateStore(db)
    rec = store.insert_operation("0123456789abcdef", "create", "web", requested_by="bob")
    assert store.get_operation(rec.id) == rec == store.get_operation("0123")
    assert store.unfinished_operations() == [rec]
    done = store.update_operation(rec.id, status=OperationStatus.FAILURE, progress=0.5,
                                  phase="copying", error="no space")
    assert (done.status, done.progress, done.phase, done.error) == (
        OperationStatus.FAILURE, 0.5, "copying", "no space")
    assert store.list_operations() == [done] == store.list_operations(requested_by="bob")
    assert store.list_operations(requested_by="alice") == []
    assert store.unfinished_operations() == []


def test_user(db: Database) -> None:
    users = UserStore(db)
    made = users.add("alice", Role.ADMIN, "a" * 64)
    assert users.get("alice") == made == users.by_token_hash("a" * 64)
    assert users.list_users() == [made]


def test_network_nic_class_bandwidth_counter(db: Database) -> None:
    store = NetworkStore(db)
    spec = NetworkSpec(
        id=0, name="lan", type=NetworkType.BRIDGED,
        subnets=(ipaddress.ip_network("10.1.0.0/24"), ipaddress.ip_network("fd00::/64")),
        gateways=(ipaddress.ip_address("10.1.0.1"),), uplink="eth9", vlan=None,
        link_rate=10**8,
        pools=((ipaddress.ip_address("10.1.0.10"), ipaddress.ip_address("10.1.0.20")),),
    )
    net = store.insert_network(spec)
    assert net == replace(spec, id=1) == store.get_network("lan") == store.get_network("1")
    nic = NicSpec(instance_id=101, index=0, network=net, mac="02:00:00:00:00:01",
                  addresses=(ipaddress.ip_address("10.1.0.10"),
                             ipaddress.ip_address("fd00::10")), antispoof=False)
    store.insert_nic(nic)
    assert store.list_nics() == [nic] == store.list_nics(101, net.id)
    assert store.used_macs() == [nic.mac]
    assert store.used_addresses(net.id) == list(nic.addresses)
    assert store.instance_with_nics("web") is None  # no such instance row

    cls = TrafficClass("local", (ipaddress.ip_network("10.0.0.0/8"),))
    store.put_class(cls)
    assert store.list_classes() == [replace(cls, id=1)]
    store.put_bandwidth(101, "local", Direction.IN, 10**6, 5 * 10**6)
    assert store.list_bandwidth(101) == [BandwidthRule(1, 101, "local", Direction.IN, 10**6,
                                                       5 * 10**6)]
    store.save_counters("ip", {"c101": (3, 300, 101, "local", Direction.OUT)})
    store.save_counters("ip", {"c101": (1, 100, 101, "local", Direction.OUT)})  # never down
    assert store.counters() == [CounterRecord("ip", "c101", 101, "local", Direction.OUT, 3,
                                              300)]
    store.delete_instance(101)
    assert (store.list_nics(), store.list_bandwidth(), store.counters()) == ([], [], [])


def test_pool_and_disk(db: Database, tmp_path: Path) -> None:
    store = StorageStore(db)
    pool = store.insert_pool(PoolConfig("fast", "btrfs", tmp_path / "p", tmp_path / "f.img",
                                        8 << 30), default=True)
    assert store.get_pool("fast") == pool == store.default_pool() == PoolRecord(
        PoolConfig("fast", "btrfs", tmp_path / "p", tmp_path / "f.img", 8 << 30), True)
    root = DiskRecord(101, "root", 0, "fast", 1 << 30)
    data = DiskRecord(101, "data", 1, "fast", 2 << 30, 3 << 30, "/srv")
    store.insert_disk(root)
    store.insert_disk(data)
    assert store.disks(101) == [root, data]
    assert store.disks_with_pools(101) == [(root, pool.config), (data, pool.config)]
    assert store.data_disk_bytes() == 3 << 30


def test_snapshot_target_schedule(db: Database) -> None:
    store = BackupStore(db)
    snap = SnapshotRecord("s1", 101, "before", None, True, "frozen", "qcow2", WHEN)
    store.insert_snapshot(snap)
    store.set_head(101, "s1")
    assert store.snapshots(101) == [snap] and store.snapshot(101, "before") == snap
    assert store.head(101) == "s1"
    target = TargetRecord("nas", "s3://bucket/x", "/k", "AK", "SK")
    store.add_target(target)
    assert store.targets() == [target] and store.target("nas") == target
    schedule = ScheduleRecord("web", "nas", "02:00", 3, 7, 4, None, "Europe/Berlin", None)
    store.set_schedule(schedule)
    later = WHEN.replace(day=7)
    store.mark_run("web", None, WHEN)
    assert store.schedules() == [replace(schedule, next_run=WHEN)]
    store.mark_run("web", WHEN, later)
    assert store.schedules() == [replace(schedule, last_run=WHEN, next_run=later)]


def test_remote_and_migration(db: Database) -> None:
    store = MigrationStore(db)
    remote = RemoteRecord("b", "https://b:8443", "tok", "ab:cd", "PEM", WHEN)
    store.put_remote(remote)
    assert store.get_remote("b") == remote and store.list_remotes() == [remote]
    store.put_remote(replace(remote, url="https://b:9443"), replace=True)
    assert store.get_remote("b") == replace(remote, url="https://b:9443")
    rec = MigrationRecord("m1", "out", "web", 101, "vm", "b", "live", MigrationStatus.RUNNING,
                          "preparing", "op1", {"why": "running", "n": 1})
    store.insert_migration(rec)
    stored = store.get_migration("m1")
    assert stored.created_at is not None and stored == replace(
        rec, created_at=stored.created_at, updated_at=stored.updated_at)
    assert store.find_by_operation("op1") == stored == store.unfinished()[0]
    done = store.update_migration("m1", status=MigrationStatus.SUCCESS, phase="done",
                                  details={"n": 2})
    assert done.details == {"why": "running", "n": 2}
    assert store.get_migration("m1") == done and store.unfinished() == []
    assert store.list_migrations() == [done]
