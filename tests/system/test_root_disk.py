"""build_root_disk against the real e2fsprogs (no root, no mounts: debugfs reads the image)."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from corral.domain.errors import InvalidInput
from corral.storage.images import build_root_disk

pytestmark = [pytest.mark.system]
if shutil.which("mkfs.ext4") is None or shutil.which("debugfs") is None:
    pytestmark.append(pytest.mark.skip(reason="e2fsprogs is not installed"))


def make_tar(path: Path, files: dict[str, bytes], uid: int = 0) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.uid, info.gid, info.mode = len(data), uid, uid, 0o4755
            tar.addfile(info, io.BytesIO(data))


def debugfs(image: Path, command: str) -> str:
    proc = subprocess.run(["debugfs", "-R", command, str(image)], capture_output=True, check=True)
    return proc.stdout.decode()


def test_image_holds_the_files_with_shifted_owners(tmp_path: Path) -> None:
    make_tar(tmp_path / "r.tar.gz", {"etc/hostname": b"tiny\n", "bin/su": b"x" * 5000}, uid=3)
    image = tmp_path / "root.img"
    build_root_disk(tmp_path / "r.tar.gz", image, 16 * 1024**2, uid_shift=100000)
    assert image.stat().st_size == 16 * 1024**2
    assert image.stat().st_blocks * 512 < 16 * 1024**2  # sparse
    assert debugfs(image, "cat /etc/hostname") == "tiny\n"
    stat = debugfs(image, "stat /bin/su")
    assert "User: 100003" in stat and "Group: 100003" in stat
    assert "Mode:  04755" in stat  # setuid survives
    assert (
        "Filesystem volume name:   root"
        in subprocess.run(
            ["dumpe2fs", "-h", str(image)], capture_output=True, check=True
        ).stdout.decode()
    )


def test_too_small_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    make_tar(tmp_path / "r.tar.gz", {"big": bytes(20 * 1024**2)})
    image = tmp_path / "root.img"
    with pytest.raises(InvalidInput, match="too small for this template"):
        build_root_disk(tmp_path / "r.tar.gz", image, 16 * 1024**2)
    assert not image.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "r.tar.gz"]


def test_unsafe_members_are_refused(tmp_path: Path) -> None:
    make_tar(tmp_path / "r.tar.gz", {"../escape": b"x"})
    with pytest.raises(InvalidInput, match="unsafe member"):
        build_root_disk(tmp_path / "r.tar.gz", tmp_path / "root.img", 16 * 1024**2)
    assert not (tmp_path / "root.img").exists()
    assert not (tmp_path.parent / "escape").exists()


def _superblock(image: Path) -> dict[str, str]:
    out = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True,
                         check=True).stdout.decode()
    return {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in out.splitlines())}


def _grows_to_16_tib(sb: dict[str, str]) -> None:
    """What offline resize2fs needs to reach 16 TiB: 4 KiB blocks (1 KiB-block file systems
    overflow their group descriptors past ~1 TiB), 64-bit block numbers, and few enough
    inodes per group that 16 TiB worth of groups stays under ext4's 2**32 inodes."""
    block = int(sb["Block size"])
    assert block == 4096
    assert "64bit" in sb["Filesystem features"].split()
    groups_at_16t = 16 * 1024**4 // (int(sb["Blocks per group"]) * block)
    assert groups_at_16t * int(sb["Inodes per group"]) < 2**32


def test_root_and_data_images_can_grow_to_16_tib(tmp_path: Path) -> None:
    from corral.storage.images import make_data_disk

    files = {f"usr/share/doc/f{i}": b"x" for i in range(3000)}
    make_tar(tmp_path / "r.tar.gz", files)
    image = tmp_path / "root.img"
    build_root_disk(tmp_path / "r.tar.gz", image, 64 * 1024**2)
    sb = _superblock(image)
    _grows_to_16_tib(sb)
    assert int(sb["Inode count"]) > 3000  # a tree of many small files still fits
    data = tmp_path / "data.img"
    make_data_disk(data, 16 * 1024**2, "data")
    _grows_to_16_tib(_superblock(data))


def _hostile_tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for info in members:
            body = data.get(info.name) if info.isreg() else None
            if body is not None:
                info.size = len(body)
            tar.addfile(info, io.BytesIO(body) if body is not None else None)


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644,
          major: int = 0, minor: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    info.devmajor, info.devminor = major, minor
    return info


@pytest.mark.parametrize("case", ["file through a symlinked dir", "file over a symlink",
                                  "dir over a symlink", "hard link through a symlink",
                                  "block device", "content over the disk size"])
def test_hostile_members_never_touch_the_host(tmp_path: Path, case: str) -> None:
    """Unpacking runs as root: a member written through a symlink would write, chown or
    chmod the host file it points at; a hard link through one would copy a host file into
    the image. Each is refused before tarfile acts on it."""
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o700)
    victim = outside / "victim"
    victim.write_bytes(b"host data\n")
    victim.chmod(0o600)
    members, data, reason = {
        "file through a symlinked dir": (
            [_info("lnk", tarfile.SYMTYPE, str(outside)), _info("lnk/victim")],
            {"lnk/victim": b"pwned\n"}, "leads outside the root"),
        "file over a symlink": (
            [_info("evil", tarfile.SYMTYPE, str(victim)), _info("evil")],
            {"evil": b"pwned\n"}, "written through the symlink"),
        "dir over a symlink": (
            [_info("evil", tarfile.SYMTYPE, str(outside)),
             _info("evil", tarfile.DIRTYPE, mode=0o777)],
            {}, "written through the symlink"),
        "hard link through a symlink": (
            [_info("lnk", tarfile.SYMTYPE, str(outside)),
             _info("copy", tarfile.LNKTYPE, "lnk/victim")],
            {}, "hard link to 'lnk/victim', which leads outside"),
        "block device": (
            [_info("dev/vda", tarfile.BLKTYPE, major=254, minor=0)], {}, "block device"),
        "content over the disk size": (
            [_info("big")], {"big": bytes(17 * 1024**2)}, "too small for this template"),
    }[case]
    _hostile_tar(tmp_path / "r.tar.gz", members, data)
    with pytest.raises(InvalidInput, match=reason):
        build_root_disk(tmp_path / "r.tar.gz", tmp_path / "pool" / "root.img", 16 * 1024**2)
    assert victim.read_bytes() == b"host data\n"
    assert victim.stat().st_mode & 0o777 == 0o600 and outside.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert not (tmp_path / "pool" / "root.img").exists()
    assert list((tmp_path / "pool").iterdir()) == []  # the staging tree is gone too
