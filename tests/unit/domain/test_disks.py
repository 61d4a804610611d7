from __future__ import annotations

from pathlib import Path

import pytest

from corral.domain.disks import (
    DataDisk,
    check_grow,
    validate_disk_name,
    validate_mount,
    validate_new_size,
)
from corral.domain.errors import InvalidInput


@pytest.mark.parametrize("name", ["data", "db-1", "a" * 20])
def test_disk_names_accepted(name: str) -> None:
    assert validate_disk_name(name) == name


@pytest.mark.parametrize("name", ["root", "", "1data", "Data", "a" * 21, "x_y", "a b"])
def test_disk_names_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        validate_disk_name(name)


def test_mount_paths() -> None:
    assert validate_mount("/srv/data") == "/srv/data"
    assert DataDisk("data", Path("/p"), 1, 1).mount_point == "/mnt/data"
    assert DataDisk("data", Path("/p"), 1, 1, "/srv/x").mount_point == "/srv/x"
    for bad in ("srv", "/srv/../etc", "/", "/proc", "/etc", "/a b", "/srv//x"):
        with pytest.raises(InvalidInput):
            validate_mount(bad)


def test_only_growing_is_allowed() -> None:
    check_grow("data", 1024**3, 1024**3)
    check_grow("data", 1024**3, 2 * 1024**3)
    with pytest.raises(InvalidInput, match=r"cannot shrink .*only growing"):
        check_grow("data", 2 * 1024**3, 1024**3)
    with pytest.raises(InvalidInput):
        validate_new_size(1024)
