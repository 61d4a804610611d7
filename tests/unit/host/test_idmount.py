"""Idmapped mounts made by Corral (``host/idmount.py``), on a real tmpfs: the files owned by
0 appear owned by the map's start through the new mount, the source is unchanged, and the
probe says yes here (or the kernel's reason) and leaves nothing mounted."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.domain.errors import HostFailure
from corral.host import idmount
from corral.host.idmap import IdMap, IdRange
from corral.host.mounts import is_mounted

MAP = IdMap(IdRange(100000, 65536), IdRange(100000, 65536))


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    src = tmp_path / "src"
    src.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(src)], check=True)
    try:
        (src / "file").write_text("x")
        os.chown(src / "file", 0, 5)
        yield src
    finally:
        subprocess.run(["umount", str(src)], check=True)


def test_idmapped_mount_shifts_owners(source: Path, tmp_path: Path) -> None:
    why = idmount.probe(source, MAP)
    if why is not None:
        pytest.skip(why)  # the kernel's own answer
    target = tmp_path / "view"
    idmount.mount_idmapped(source, target, MAP)
    try:
        seen = os.stat(target / "file")
        assert (seen.st_uid, seen.st_gid) == (100000, 100005)
        assert (os.stat(source / "file").st_uid, os.stat(source / "file").st_gid) == (0, 5)
        assert (target / "file").read_text() == "x"
    finally:
        subprocess.run(["umount", str(target)], check=True)
    assert not is_mounted(target)


def test_probe_leaves_nothing_behind(source: Path) -> None:
    idmount.probe(source, MAP)
    assert [p.name for p in source.parent.iterdir()] == ["src"]
    assert idmount.fs_type(source) == "tmpfs"


def test_a_missing_source_is_the_kernels_error(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with pytest.raises(HostFailure, match=r"open_tree .*No such file"):
        idmount.mount_idmapped(tmp_path / "absent", tmp_path / "view", MAP)
