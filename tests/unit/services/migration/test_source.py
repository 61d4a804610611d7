"""Which way a migration takes, from the driver's declared paths (real drivers' hooks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.domain.errors import InvalidInput
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.drivers.fake.driver import FakeDriver
from corral.drivers.lxc.driver import LxcDriver
from corral.drivers.migration import MigrationPath, migration_hooks
from corral.drivers.qemu.driver import QemuDriver
from corral.host import criu, idmount
from corral.services.migration.source import choose_path


def test_a_stopped_instance_or_offline_asked_moves_offline() -> None:
    for kind, driver in ((Kind.VM, QemuDriver()), (Kind.CT, FakeDriver(Kind.CT))):
        hooks = migration_hooks(driver)
        path, why = choose_path(kind, hooks, running=False, mode="live")
        assert (path, why) == (MigrationPath.OFFLINE,
                               "the instance is stopped: its disk and files are copied")
        path, why = choose_path(kind, hooks, running=True, mode="offline")
        assert path is MigrationPath.OFFLINE
        assert why.startswith("asked for --offline")


def test_a_running_vm_moves_live_where_the_driver_can() -> None:
    path, why = choose_path(Kind.VM, migration_hooks(QemuDriver()), running=True, mode="auto")
    assert path is MigrationPath.LIVE
    assert why == "QEMU live migration: NBD disk mirror, then RAM pre-copy"


def test_a_vm_of_a_copy_only_driver_is_pre_copied_and_refuses_live() -> None:
    hooks = migration_hooks(FakeDriver(Kind.VM))
    path, why = choose_path(Kind.VM, hooks, running=True, mode="auto")
    assert path is MigrationPath.PRECOPY
    assert why == "this driver cannot move RAM: disk pre-copy, stop, delta, start"
    with pytest.raises(InvalidInput, match="live migration of a VM needs the QEMU driver"):
        choose_path(Kind.VM, hooks, running=True, mode="live")


def test_a_running_container_is_pre_copied_saying_why_not_criu(tmp_path: Path) -> None:
    path, why = choose_path(Kind.CT, migration_hooks(FakeDriver(Kind.CT)), running=True,
                            mode="live")
    assert path is MigrationPath.PRECOPY
    assert why.startswith(
        "pre-copied restart (not a real container): disk pre-copied while running")
    path, why = choose_path(Kind.CT, migration_hooks(LxcDriver(tmp_path / "lxc")),
                            running=True, mode="auto")
    assert path is MigrationPath.PRECOPY
    # without the instance: the restart path, with the probe's verdict (whatever it is here)
    assert why.startswith("pre-copied restart (")
    assert why.endswith("final delta sync, start on the target")
    spec = InstanceSpec(id=3, name="m", kind=Kind.CT, template="tiny",
                        resources=Resources.from_dict({}), directory=tmp_path / "3")
    path, why = choose_path(Kind.CT, migration_hooks(LxcDriver(tmp_path / "lxc")),
                            running=True, mode="auto", spec=spec)
    # unprivileged: checkpointed where CRIU works and idmapped mounts are not known to
    # fail here (its root is not mounted: no probe of it); else the restart path, with why
    if criu.probe().works and idmount.cached() is None:
        assert path is MigrationPath.CHECKPOINT
    else:
        assert path is MigrationPath.PRECOPY
        assert "idmap" in why or "CRIU" in why
