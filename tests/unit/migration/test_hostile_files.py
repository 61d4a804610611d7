"""The instance files a migration source sends (a tar) are unpacked with tarfile's "data"
filter: a traversal, an absolute path, a link out or a device node is a clear InvalidInput,
and nothing lands outside the instance's directory."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from corral.domain.errors import InvalidInput
from corral.migration.files import extract_files


def _tar(info: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    if kind == tarfile.BLKTYPE:
        info.devmajor, info.devminor = 254, 0
    return info


@pytest.mark.parametrize("member", [
    _member("../escape"),
    _member("link", tarfile.SYMTYPE, "/etc"), _member("hard", tarfile.LNKTYPE, "../../x"),
    _member("vda", tarfile.BLKTYPE),
], ids=["traversal", "symlink out", "hard link out", "device"])
def test_hostile_files_are_refused(tmp_path: Path, member: tarfile.TarInfo) -> None:
    target = tmp_path / "instance"
    target.mkdir()
    with pytest.raises(InvalidInput, match="not a safe archive"):
        extract_files(target, _tar(member, b"x" if member.isreg() else b""))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instance"]


def test_an_absolute_name_lands_inside(tmp_path: Path) -> None:
    """The "data" filter strips the leading '/': inside the directory, not at the host path."""
    target = tmp_path / "instance"
    target.mkdir()
    extract_files(target, _tar(_member(f"{tmp_path}/escape"), b"x"))
    assert not (tmp_path / "escape").exists()
    assert (target / str(tmp_path).lstrip("/") / "escape").read_bytes() == b"x"
