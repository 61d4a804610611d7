"""Which files an incoming migration accepts as data disks: in a live move the disks QEMU
mirrors over NBD take no file frames (a second writer); the unattached ones do."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from corral.domain.disks import DataDisk
from corral.domain.errors import InvalidInput
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.migration.files import side_file
from corral.wire.migration import IncomingRequest


def _spec(tmp_path: Path) -> InstanceSpec:
    disks = tuple(DataDisk(name, tmp_path / f"{name}.raw", 1 << 20, i)
                  for i, name in enumerate(("data", "later"), start=1))
    return InstanceSpec(id=7, name="vm1", kind=Kind.VM, template="tiny",
                        resources=Resources(cpus=1, memory=1 << 28, disk=1 << 26),
                        directory=tmp_path / "vm1", data_disks=disks)


def _request(path: Literal["live", "copy"], live_disks: list[str] | None) -> IncomingRequest:
    return IncomingRequest(
        migration_id="m", source_node="a", name="vm1", id=7, kind="vm", template="tiny",
        template_version="1", resources={}, privileged=False, nics=[], disk_size=0,
        disk_allocated=0, files_size=0, path=path, live_disks=live_disks)


def test_a_live_move_takes_files_only_for_the_disks_qemu_does_not_mirror(
        tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    request = _request("live", ["data"])
    assert side_file(spec, request, "later.img", 1 << 20) == tmp_path / "later.raw"
    with pytest.raises(InvalidInput, match="no file of this migration"):
        side_file(spec, request, "data.img", 1 << 20)


def test_a_copy_takes_every_data_disk_and_an_old_live_source_none(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    for name in ("data", "later"):
        assert side_file(spec, _request("copy", None), f"{name}.img", 0).name == f"{name}.raw"
        with pytest.raises(InvalidInput):
            side_file(spec, _request("live", None), f"{name}.img", 0)
