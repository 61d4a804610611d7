"""Hostile template artifacts are refused at import, each with its reason, and nothing of them
is written outside the staging directory (the root filesystem archive is walked, not
unpacked, at import; ``tests/system/test_root_disk.py`` unpacks the same members)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from corral.domain.errors import InvalidInput
from corral.templates.artifact import export_template, sha256_file, unpack_artifact

Member = Callable[[tarfile.TarFile], None]


def regular(name: str, data: bytes = b"x") -> Member:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return add


def special(name: str, kind: bytes, link: str = "", major: int = 0, minor: int = 0) -> Member:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.devmajor, info.devminor = kind, link, major, minor
        tar.addfile(info)
    return add


HOSTILE: dict[str, tuple[list[Member], str]] = {
    "traversal": ([regular("../../etc/cron.d/evil")], "unsafe member"),
    "absolute": ([regular("/etc/cron.d/evil")], "unsafe member"),
    "hard link out": ([special("etc/shadow-copy", tarfile.LNKTYPE, "../../etc/shadow")],
                      "unsafe hard link target"),
    "absolute hard link": ([special("etc/x", tarfile.LNKTYPE, "/etc/shadow")],
                           "unsafe hard link target"),
    "block device": ([special("dev/vda", tarfile.BLKTYPE, major=254, minor=0)],
                     "block device 254:0"),
    "/dev/mem": ([special("dev/mem", tarfile.CHRTYPE, major=1, minor=1)],
                 "character device 1:1"),
    "/dev/kvm": ([special("dev/kvm", tarfile.CHRTYPE, major=10, minor=232)],
                 "character device 10:232"),
    "huge file": ([regular("big", b"\0" * (65 << 20))],
                  "declared disk size .* too small for this template"),
}


def _template(directory: Path, members: list[Member], disk: int = 64 << 20) -> Path:
    directory.mkdir(parents=True)
    with tarfile.open(directory / "rootfs.tar.gz", "w:gz") as tar:
        regular("etc/hostname", b"evil\n")(tar)
        special("dev/null", tarfile.CHRTYPE, major=1, minor=3)(tar)  # allowed: harmless
        special("bin/sh", tarfile.SYMTYPE, "/bin/busybox")(tar)  # allowed: resolved in guest
        for add in members:
            add(tar)
    return _finish(directory, disk)


def _finish(directory: Path, disk: int) -> Path:
    (directory / "metadata.json").write_text(json.dumps({
        "name": "evil", "version": "1", "os": "busybox", "arch": "x86_64",
        "resources": {"disk": disk},
        "files": {"rootfs.tar.gz": sha256_file(directory / "rootfs.tar.gz")},
    }))
    dest = directory.parent / "evil.corral-template"
    export_template(directory, dest)
    return dest


def _import(tmp_path: Path, artifact: Path) -> Path:
    staging = tmp_path / "staging"
    staging.mkdir()
    unpack_artifact(artifact, staging)
    return staging


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_rootfs_is_refused_with_its_reason(tmp_path: Path, case: str) -> None:
    members, reason = HOSTILE[case]
    artifact = _template(tmp_path / "src", members)
    before = set(tmp_path.rglob("*"))
    with pytest.raises(InvalidInput, match=reason):
        _import(tmp_path, artifact)
    made = set(tmp_path.rglob("*")) - before
    # only the staging directory and what it holds (the caller removes it)
    assert all(p.is_relative_to(tmp_path / "staging") for p in made), made
    assert not (tmp_path / "staging" / "etc").exists()  # the rootfs is never unpacked here


def test_the_harmless_devices_and_absolute_symlinks_are_accepted(tmp_path: Path) -> None:
    artifact = _template(tmp_path / "src", [
        special(f"dev/{name}", tarfile.CHRTYPE, major=major, minor=minor)
        for name, major, minor in (("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
                                   ("urandom", 1, 9), ("tty", 5, 0), ("console", 5, 1),
                                   ("ptmx", 5, 2))])
    assert (_import(tmp_path, artifact) / "rootfs.tar.gz").is_file()


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar is not installed")
def test_a_huge_sparse_file_is_refused_by_its_size(tmp_path: Path) -> None:
    """A 1 TiB sparse file takes a few bytes in the archive and would take 1 TiB of the
    staging file system's room (or of the image) if unpacked: refused by its full size."""
    tree = tmp_path / "tree"
    tree.mkdir()
    with (tree / "sparse").open("wb") as handle:
        handle.truncate(1 << 40)
    directory = tmp_path / "src"
    directory.mkdir()
    subprocess.run(["tar", "-S", "-czf", str(directory / "rootfs.tar.gz"), "-C", str(tree),
                    "sparse"], check=True)
    assert (directory / "rootfs.tar.gz").stat().st_size < 1 << 20
    with pytest.raises(InvalidInput, match="reach 1099511627776 bytes at member 'sparse'"):
        _import(tmp_path, _finish(directory, 64 << 20))
