"""The database opens once migrated, and a database made by the schema of an earlier release
(Alembic head 0008, rows written by SQLAlchemy as that release did) upgrades in place with
every row readable."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from corral.domain.instance import Kind
from corral.domain.lifecycle import State
from corral.domain.resources import Resources
from corral.domain.statuses import MigrationStatus, OperationStatus
from corral.domain.users import Role
from corral.state.backupstore import BackupStore
from corral.state.database import MIGRATIONS, Database, head_revision
from corral.state.migstore import MigrationStore
from corral.state.netstore import NetworkStore
from corral.state.storagestore import StorageStore
from corral.state.store import StateStore
from corral.state.userstore import UserStore

OLD_HEAD = "0008"
WHEN = datetime(2026, 11, 30, 10, 0, 0, 123456)


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _revision(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])


def test_a_new_database_is_at_head_and_opening_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "corral.db"
    Database.open(path)
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert _revision(path) == head
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    Database.open(path)
    assert _revision(path) == head


def _old_database(path: Path) -> None:
    """Schema at 0007, one row in each table, written through SQLAlchemy's types (its date
    and JSON formats) as the stores of that release did."""
    engine = sa.create_engine(f"sqlite:///{path}")
    config = _config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, OLD_HEAD)
    meta = sa.MetaData()
    with engine.begin() as conn:
        meta.reflect(conn)
        rows: dict[str, dict[str, object]] = {
            "users": {"name": "bob", "role": "owner", "token_hash": "h" * 64, "created_at": WHEN},
            "instances": {"id": 101, "name": "web", "kind": "ct", "template": "tiny",
                          "state": "stopped", "resources": {"cpus": 2, "memory": 1 << 28},
                          "privileged": False, "node": "n1", "created_at": WHEN,
                          "owner": "bob"},
            "operations": {"id": "op1", "action": "create", "instance": "web",
                           "status": "success", "progress": 1.0, "phase": "done",
                           "created_at": WHEN, "updated_at": WHEN},
            "networks": {"id": 1, "name": "lan", "type": "bridged", "subnets": ["10.1.0.0/24"],
                         "gateways": ["10.1.0.1"], "pools": [], "link_rate": 10**9,
                         "created_at": WHEN},
            "nics": {"id": 1, "instance_id": 101, "idx": 0, "network_id": 1,
                     "mac": "02:00:00:00:00:01", "antispoof": True},
            "nic_addresses": {"nic_id": 1, "network_id": 1, "address": "10.1.0.5"},
            "storage_pools": {"name": "default", "driver": "dir", "path": "/p",
                              "is_default": True, "created_at": WHEN},
            "instance_disks": {"instance_id": 101, "name": "root", "idx": 0, "pool": "default",
                               "size": 1 << 30},
            "snapshots": {"id": "s1", "instance_id": 101, "name": "a", "memory": False,
                          "consistency": "", "method": "reflink", "created_at": WHEN},
            "backup_schedules": {"instance": "web", "target": "nas", "daily_at": "02:00",
                                 "keep_last": 1, "keep_daily": 0, "keep_weekly": 0,
                                 "last_run": WHEN, "tz": "UTC", "next_run": WHEN},
            "migrations": {"id": "m1", "direction": "out", "instance": "web",
                           "instance_id": 101, "kind": "ct", "peer": "b", "path": "offline",
                           "status": "failure", "phase": "rolled back", "details": {"a": 1},
                           "created_at": WHEN, "updated_at": WHEN},
        }
        for table, row in rows.items():
            conn.execute(meta.tables[table].insert().values(**row))
    engine.dispose()


def test_a_database_of_the_previous_schema_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "corral.db"
    _old_database(path)
    assert _revision(path) == OLD_HEAD
    db = Database.open(path)
    assert _revision(path) != OLD_HEAD

    web = StateStore(db).get_instance("web")
    assert (web.id, web.kind, web.state, web.owner, web.created_at) == (
        101, Kind.CT, State.STOPPED, "bob", WHEN)
    assert web.resources == Resources(cpus=2, memory=1 << 28)
    op = StateStore(db).get_operation("op1")
    assert (op.status, op.created_at) == (OperationStatus.SUCCESS, WHEN)
    assert UserStore(db).get("bob").role is Role.OWNER
    nets = NetworkStore(db)
    assert [str(a) for n in nets.list_nics(101) for a in n.addresses] == ["10.1.0.5"]
    assert nets.instance_with_nics("web") == 101
    assert [d.name for d, _pool in StorageStore(db).disks_with_pools(101)] == ["root"]
    backups = BackupStore(db)
    assert backups.snapshot(101, "a").created_at == WHEN
    schedule = backups.schedules()[0]
    assert (schedule.last_run, schedule.tz, schedule.next_run) == (WHEN, "UTC", WHEN)
    mig = MigrationStore(db).get_migration("m1")
    assert (mig.status, mig.details, mig.updated_at) == (MigrationStatus.FAILURE, {"a": 1},
                                                         WHEN)
    # and it takes new rows: the id of the instance deleted after the upgrade is retired
    StateStore(db).delete_instance(101)
    assert db.column("SELECT id FROM retired_ids") == [101]


def test_the_head_read_without_alembic_is_alembics_head(tmp_path: Path) -> None:
    """``migrate`` skips Alembic when the file is at ``head_revision``: it must be Alembic's."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert head_revision() == ScriptDirectory.from_config(config).get_current_head()
    chain = {"a.py": 'revision = "r1"\ndown_revision = None\n',
             "b.py": 'revision: str = "r2"\ndown_revision: str | None = "r1"\n'}
    for name, text in chain.items():
        (tmp_path / name).write_text(text)
    assert head_revision(tmp_path) == "r2"
    (tmp_path / "c.py").write_text('revision = "r3"\ndown_revision = "r1"\n')  # two heads
    assert head_revision(tmp_path) is None
    (tmp_path / "d.py").write_text('revision = "r4"\ndown_revision = ("r2", "r3")\n')  # merge
    assert head_revision(tmp_path) is None

