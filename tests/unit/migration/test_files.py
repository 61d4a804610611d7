"""The instance's files as a migration moves them, on real files: the tar of its
directory, snapshot files, where an arriving file may go (in a live move the disks QEMU
mirrors over NBD take no file frames: a second writer; the unattached ones do), free space."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

import pytest

from corral.domain.disks import DataDisk
from corral.domain.errors import InvalidInput
from corral.domain.instance import InstanceSpec, Kind
from corral.domain.resources import Resources
from corral.migration.files import (
    NoSpace,
    check_space,
    extract_files,
    files_size,
    instance_files,
    side_file,
    snapshot_files,
)
from corral.wire.migration import IncomingRequest, SnapshotTransfer


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


def _ct_spec(tmp_path: Path, data: tuple[DataDisk, ...] = ()) -> InstanceSpec:
    directory = tmp_path / "instances" / "7"
    directory.mkdir(parents=True)
    return InstanceSpec(id=7, name="a", kind=Kind.CT, template="tiny",
                        resources=Resources.from_dict({}), directory=directory,
                        data_disks=data)


def _copy_request(disk_allocated: int = 0, snapshots: tuple[str, ...] = ()) -> IncomingRequest:
    return IncomingRequest(
        migration_id="m", source_node="src", name="a", id=7, kind="ct", template="tiny",
        template_version="1", resources={}, privileged=False, nics=[], disk_size=0,
        disk_allocated=disk_allocated, files_size=0, path="copy",
        snapshots=[SnapshotTransfer(id=s, name=s, parent=None, memory=False,
                                    consistency="crash", method="sparse copy",
                                    created_at="2026-01-01T00:00:00") for s in snapshots],
    )


def test_the_tar_leaves_out_disk_nics_runtime_and_snapshots(tmp_path: Path) -> None:
    spec = _ct_spec(tmp_path)
    for name in ("root.img", "nics.json", "lxc.log", "config.json"):
        (spec.directory / name).write_bytes(b"x" * 5000)
    for sub in ("run", "snapshots", "extra"):
        (spec.directory / sub).mkdir()
        (spec.directory / sub / "f").write_bytes(b"y" * 5000)
    arrived = tmp_path / "arrived"
    arrived.mkdir()
    extract_files(arrived, instance_files(spec.directory))
    assert sorted(p.relative_to(arrived).as_posix() for p in arrived.rglob("*")) == [
        "config.json", "extra", "extra/f"]
    assert (arrived / "extra" / "f").read_bytes() == b"y" * 5000
    assert files_size(spec.directory) == sum(
        (spec.directory / p).stat().st_blocks * 512 for p in ("config.json", "extra/f"))


def test_snapshot_files_are_named_beside_the_root_disk(tmp_path: Path) -> None:
    spec = _ct_spec(tmp_path)
    top = spec.directory / "snapshots" / "s1"
    (top / "sub").mkdir(parents=True)
    (top / "root.img").write_bytes(b"r")
    (top / "sub" / "state").write_bytes(b"s")
    found = snapshot_files(spec, ["s1", "gone"])
    assert [name for name, _path in found] == ["snapshots/s1/root.img",
                                              "snapshots/s1/sub/state"]


def test_a_side_file_goes_only_where_the_migration_says(tmp_path: Path) -> None:
    data = DataDisk("data", tmp_path / "pool" / "data.img", 1 << 20, 1)
    spec = _ct_spec(tmp_path, (data,))
    request = _copy_request(snapshots=("s1",))
    assert side_file(spec, request, "data.img", 10) == data.path
    made = side_file(spec, request, "snapshots/s1/root.img", 4096)
    assert made == spec.directory / "snapshots" / "s1" / "root.img"
    assert made.stat().st_size == 4096
    for bad in ("../escape", "snapshots/other/root.img", "snapshots/s1", "/etc/passwd",
                "snapshots/s1/.hidden", "other.img"):
        with pytest.raises(InvalidInput):
            side_file(spec, request, bad, 1)
    assert not (tmp_path / "escape").exists()


def test_no_space_names_what_is_free_and_needed(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    check_space(tmp_path, _copy_request(disk_allocated=1 << 20))
    with pytest.raises(NoSpace) as caught:
        check_space(tmp_path, _copy_request(disk_allocated=free + (1 << 30)))
    assert caught.value.status == 507
    message = caught.value.message
    assert f"MiB free in {tmp_path}" in message
    assert f"needs {(free + (1 << 30) + 16 * 1024**2) // 1024**2} MiB" in message
