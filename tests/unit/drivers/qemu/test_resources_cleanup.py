"""A start that failed cleans up the VM's cgroup without hiding why it failed: found in a
Debian 12 container whose cgroup mounts were read-only, where every VM create reported
"cannot remove cgroup" instead of the write that failed first."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from corral.domain.errors import HostFailure
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.drivers.qemu import resources as vm_resources
from corral.host.cgroups import CgroupLayout, CgroupVersion


def _spec(tmp_path: Path) -> InstanceSpec:
    return InstanceSpec(id=7, name="vm7", kind=Kind.VM, template="tiny",
                        resources=Resources.from_dict({}), directory=tmp_path / "7")


def _stuck_group(tmp_path: Path, spec: InstanceSpec) -> CgroupLayout:
    """A v1 cpu hierarchy (a plain directory) whose VM group cannot be removed: it is not
    empty, as a read-only or busy group would refuse too."""
    root = tmp_path / "cpu"
    group = root / vm_resources.cgroup_path(spec)
    group.mkdir(parents=True)
    (group / "tasks").write_text("")
    return CgroupLayout(version=CgroupVersion.V1, v1={"cpu": root})


def test_unplace_raises_when_the_group_stays(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    with pytest.raises(HostFailure, match="cannot remove cgroup"):
        vm_resources.unplace(spec, _stuck_group(tmp_path, spec))


def test_unplace_after_failure_logs_instead_of_raising(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = _spec(tmp_path)
    layout = _stuck_group(tmp_path, spec)
    with caplog.at_level(logging.WARNING, logger="corral.drivers.qemu"):
        try:
            raise HostFailure("cannot write cpu.shares: Read-only file system")
        except HostFailure as first:
            # what start's clean-up does before re-raising
            vm_resources.unplace_after_failure(spec, layout)
            assert "Read-only" in str(first)
    assert "vm7 failed to start" in caplog.text and "cannot remove cgroup" in caplog.text


def test_unplace_after_failure_removes_an_empty_group(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    layout = _stuck_group(tmp_path, spec)
    group = tmp_path / "cpu" / vm_resources.cgroup_path(spec)
    (group / "tasks").unlink()
    vm_resources.unplace_after_failure(spec, layout)
    assert not group.exists()
