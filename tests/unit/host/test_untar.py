"""``host.untar``: the same unpacking with and without PEP 706 filters in tarfile (Debian
12's python3.11 is 3.11.2, which has none)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.host import untar


@pytest.fixture(params=["native", "fallback"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "native" and not untar.NATIVE:
        pytest.skip("this Python's tarfile has no extraction filters (before 3.11.4)")
    monkeypatch.setattr(untar, "NATIVE", request.param == "native")
    yield request.param


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> tarfile.TarFile:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    buffer.seek(0)
    return tarfile.open(fileobj=buffer, mode="r")


def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, mode: int = 0o644,
          link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.linkname = kind, size, mode, link
    return info


def test_a_callable_filter_sees_each_member_and_may_change_or_skip_it(
        tmp_path: Path, mode: str) -> None:
    seen: list[str] = []

    def judge(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        seen.append(member.name)
        assert dest == str(tmp_path)
        if member.name == "skip":
            return None
        return untar.with_owner(member, 4242, 4343)

    archive = _tar((_info("etc", tarfile.DIRTYPE, mode=0o555), b""),
                   (_info("etc/hosts", size=3), b"abc"), (_info("skip", size=1), b"x"))
    untar.extract_all(archive, tmp_path, judge, numeric_owner=True)
    assert seen == ["etc", "etc/hosts", "skip"]
    assert (tmp_path / "etc/hosts").read_bytes() == b"abc"
    assert not (tmp_path / "skip").exists()
    assert (tmp_path / "etc").stat().st_mode & 0o777 == 0o555  # its own mode, set last
    assert (tmp_path / "etc/hosts").stat().st_uid == 4242
    assert (tmp_path / "etc").stat().st_gid == 4343


def test_a_filter_that_raises_stops_the_unpacking(tmp_path: Path, mode: str) -> None:
    def judge(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        if member.name == "bad":
            raise ValueError("refused: bad")
        return member

    archive = _tar((_info("good", size=1), b"g"), (_info("bad", size=1), b"b"),
                   (_info("after", size=1), b"a"))
    with pytest.raises(ValueError, match="refused: bad"):
        untar.extract_all(archive, tmp_path, judge)
    assert (tmp_path / "good").exists() and not (tmp_path / "after").exists()


@pytest.mark.parametrize("member", [
    _info("../escape", size=1),
    _info("link", tarfile.SYMTYPE, link="/etc/passwd"),
    _info("link", tarfile.SYMTYPE, link="../../outside"),
    _info("dev", tarfile.CHRTYPE),
    _info("fifo", tarfile.FIFOTYPE),
], ids=["parent", "absolute-symlink", "outside-symlink", "device", "fifo"])
def test_the_data_filter_refuses_what_leaves_the_destination(
        tmp_path: Path, mode: str, member: tarfile.TarInfo) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    archive = _tar((member, b"x" if member.size else b""))
    with pytest.raises(tarfile.TarError):
        untar.extract_all(archive, dest, "data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]


def test_the_data_filter_drops_set_id_bits_and_keeps_plain_data(
        tmp_path: Path, mode: str) -> None:
    archive = _tar((_info("run", size=2, mode=0o4777), b"#!"),
                   (_info("sub", tarfile.DIRTYPE, mode=0o755), b""),
                   (_info("sub/rel", tarfile.SYMTYPE, link="../run"), b""))
    untar.extract_all(archive, tmp_path, "data")
    assert (tmp_path / "run").stat().st_mode & 0o7777 == 0o755
    assert (tmp_path / "sub/rel").read_bytes() == b"#!"
