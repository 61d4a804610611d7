"""Every driver's migration hooks: the ways its instances move (data), and what the hooks of
a driver without a live path refuse. The real drivers are constructed, not run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from corral.domain.errors import Conflict, Unsupported
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.drivers.base import Driver
from corral.drivers.fake.driver import FakeDriver
from corral.drivers.lxc.driver import LxcDriver
from corral.drivers.migration import LiveOffer, MigrationPath, migration_hooks
from corral.drivers.qemu.driver import QemuDriver
from corral.host import criu, idmount
from corral.host.idmap import root_idmap

COPY = {MigrationPath.PRECOPY, MigrationPath.OFFLINE}


def _spec(tmp_path: Path, kind: Kind, privileged: bool = False) -> InstanceSpec:
    return InstanceSpec(id=3, name="m", kind=kind, template="tiny",
                        resources=Resources.from_dict({}), directory=tmp_path / "3",
                        privileged=privileged)


@pytest.mark.parametrize(("make", "paths"), [
    (lambda _p: FakeDriver(Kind.CT), COPY),
    (lambda _p: FakeDriver(Kind.VM), COPY),
    (lambda p: LxcDriver(p / "lxc"), {*COPY, MigrationPath.CHECKPOINT}),
    (lambda _p: QemuDriver(), {*COPY, MigrationPath.LIVE}),
], ids=["fake-ct", "fake-vm", "lxc", "qemu"])
def test_each_driver_declares_how_its_instances_move(
        tmp_path: Path, make: Callable[[Path], Driver], paths: set[MigrationPath]) -> None:
    assert migration_hooks(make(tmp_path)).paths == paths


@pytest.mark.parametrize("kind", [Kind.CT, Kind.VM])
def test_a_copy_only_driver_refuses_every_live_step(tmp_path: Path, kind: Kind) -> None:
    hooks = migration_hooks(FakeDriver(kind))
    spec = _spec(tmp_path, kind)
    with pytest.raises(Unsupported):
        hooks.live_offer(spec)
    with pytest.raises(Unsupported):
        hooks.live_source(spec, LiveOffer())
    with pytest.raises(Unsupported):
        hooks.finish_incoming(spec, LiveOffer())
    assert hooks.recover_source(spec, resume=True) == []
    assert hooks.checkpoint_refusal(spec) == "this driver cannot checkpoint processes"
    with pytest.raises(Unsupported):
        hooks.checkpoint(spec, tmp_path / "dump", stop=True)
    assert hooks.idmap_start(spec) is None
    hooks.check_arrival(100000, privileged=False)  # fake files are never shifted


def test_lxc_sends_its_uid_shift_and_refuses_another(tmp_path: Path) -> None:
    hooks = migration_hooks(LxcDriver(tmp_path / "lxc"))
    here = root_idmap()
    start = None if here is None else here.uid.start
    assert hooks.idmap_start(_spec(tmp_path, Kind.CT)) == start
    assert hooks.idmap_start(_spec(tmp_path, Kind.CT, privileged=True)) is None
    other = 1 if start is None else start + 65536
    with pytest.raises(Conflict, match=f"shifted to host uid {other}; this host maps root"):
        hooks.check_arrival(other, privileged=False)
    hooks.check_arrival(other, privileged=True)  # privileged: nothing is shifted
    hooks.check_arrival(None, privileged=False)
    if start is not None:
        hooks.check_arrival(start, privileged=False)


def test_lxc_checkpoints_an_unprivileged_container_unless_idmapped_mounts_fail(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Corral makes the idmapped root LXC 5.0's restore lacks: an unprivileged container is
    refused only where CRIU does not work or an idmapped mount failed here (the kernel's
    words, cached per file system type)."""
    hooks = migration_hooks(LxcDriver(tmp_path / "lxc"))
    spec = _spec(tmp_path, Kind.CT)
    works = criu.probe().works
    monkeypatch.setitem(idmount._probed, "ext4", None)
    refused = hooks.checkpoint_refusal(spec)
    if works:
        assert refused is None
    else:
        assert refused is not None and "CRIU" in refused
    monkeypatch.setitem(idmount._probed, "ext4", "idmapped mounts on ext4 do not work here: x")
    refused = hooks.checkpoint_refusal(spec)
    assert refused is not None
    assert ("idmapped mounts on ext4" if works else "CRIU") in refused
