"""The host policy's VM launch priority: a starting VM's cgroup weighs ``factor`` times its
configured CPU weight from ``launching`` until ``started``, then its own again (v1 and v2
files; capped at each file's maximum; 1 writes nothing more)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.drivers.qemu import resources as vm_resources
from corral.drivers.qemu.cmdline import VmPaths
from corral.host.cgroups import CgroupLayout, CgroupVersion


def _spec(tmp_path: Path, shares: int | None) -> InstanceSpec:
    res = Resources.from_dict({} if shares is None else {"cpu_shares": shares})
    return InstanceSpec(id=9, name="vm9", kind=Kind.VM, template="tiny", resources=res,
                        directory=tmp_path / "9")


def _weight(layout: CgroupLayout, spec: InstanceSpec, file: str) -> str:
    root = layout.v1["cpu"] if layout.version == CgroupVersion.V1 else layout.v2_mount
    assert root is not None
    return (root / vm_resources.cgroup_path(spec) / file).read_text().strip()


def _layout(tmp_path: Path, version: CgroupVersion) -> CgroupLayout:
    if version == CgroupVersion.V1:
        (tmp_path / "cpu").mkdir()
        return CgroupLayout(version=version, v1={"cpu": tmp_path / "cpu"})
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("cpu\n")
    return CgroupLayout(version=version, v2_mount=tmp_path / "unified",
                        v2_controllers=frozenset({"cpu"}))


@pytest.mark.parametrize(("version", "file", "shares", "factor", "boosted", "configured"), [
    (CgroupVersion.V1, "cpu.shares", None, 8, "8192", "1024"),
    (CgroupVersion.V1, "cpu.shares", 100_000, 8, "262144", "100000"),  # v1's maximum
    (CgroupVersion.V2, "cpu.weight", None, 8, "800", "100"),
    (CgroupVersion.V2, "cpu.weight", 262_144, 8, "10000", "10000"),  # v2's maximum
    (CgroupVersion.V1, "cpu.shares", 512, 1, "512", "512"),  # 1: no priority
])
def test_weight_while_launching_then_configured(
        tmp_path: Path, version: CgroupVersion, file: str, shares: int | None, factor: int,
        boosted: str, configured: str) -> None:
    layout = _layout(tmp_path, version)
    spec = _spec(tmp_path, shares)
    paths = VmPaths(directory=spec.directory, run=spec.directory / "run")
    paths.run.mkdir(parents=True)
    vm_resources.launching(spec, paths, layout, factor)
    assert _weight(layout, spec, file) == boosted
    vm_resources.started(spec, paths, layout, pid=0, placed=True, priority=factor)
    assert _weight(layout, spec, file) == configured


@pytest.mark.parametrize(("version", "file"), [
    (CgroupVersion.V1, "cpu.shares"), (CgroupVersion.V2, "cpu.weight")])
def test_a_daemon_restart_writes_the_weight_a_cut_launch_left_boosted(
        tmp_path: Path, version: CgroupVersion, file: str) -> None:
    """corrald killed between ``launching`` and ``started``: the group stays at the boosted
    weight until the restarted daemon adopts the running VM (``restore_weight``)."""
    layout = _layout(tmp_path, version)
    spec = _spec(tmp_path, 512)
    paths = VmPaths(directory=spec.directory, run=spec.directory / "run")
    paths.run.mkdir(parents=True)
    vm_resources.launching(spec, paths, layout, 16)
    configured = {"cpu.shares": "512", "cpu.weight": "20"}[file]
    assert _weight(layout, spec, file) != configured
    vm_resources.restore_weight(spec, layout)
    assert _weight(layout, spec, file) == configured


def test_restoring_the_weight_of_a_vm_without_a_group_makes_none(tmp_path: Path) -> None:
    layout = _layout(tmp_path, CgroupVersion.V1)
    spec = _spec(tmp_path, None)
    vm_resources.restore_weight(spec, layout)
    assert not (tmp_path / "cpu" / vm_resources.cgroup_path(spec)).exists()
