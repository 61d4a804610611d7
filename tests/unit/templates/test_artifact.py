"""The .corral-template artifact: round trip, and every way a damaged file is refused."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from corral.domain.errors import Conflict, InvalidInput
from corral.services.templates import TemplateService
from corral.templates.artifact import (
    export_template,
    read_metadata,
    sha256_file,
    unpack_artifact,
)


def _rootfs(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def make_template(directory: Path, name: str = "mini") -> Path:
    directory.mkdir(parents=True)
    _rootfs(directory / "rootfs.tar.gz", {"etc/hostname": b"mini\n", "bin/x": b"\0" * 5000})
    (directory / "vmlinux").write_bytes(b"\x7fELF" + bytes(range(256)) * 400)
    (directory / "initrd.img").write_bytes(b"070701" + b"initrd" * 1000)
    files = {n: sha256_file(directory / n) for n in ("rootfs.tar.gz", "vmlinux", "initrd.img")}
    (directory / "metadata.json").write_text(json.dumps({
        "name": name, "version": "3", "os": "busybox", "arch": "x86_64",
        "kernel": {"source": "host:test"}, "resources": {"disk": 64 << 20}, "files": files,
    }))
    return directory


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    source = make_template(tmp_path / "src")
    dest = tmp_path / "mini.corral-template"
    export_template(source, dest)
    return dest


def test_round_trip_restores_identical_files(tmp_path: Path, artifact: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    metadata = unpack_artifact(artifact, out)
    assert metadata["name"] == "mini"
    for name in ("rootfs.tar.gz", "vmlinux", "initrd.img"):
        assert (out / name).read_bytes() == (tmp_path / "src" / name).read_bytes()
    assert read_metadata(artifact)["version"] == "3"
    with tarfile.open(artifact) as tar:
        assert tar.getnames() == ["metadata.json", "rootfs.tar.gz", "vmlinux.gz",
                                  "initrd.img.gz"]


def _rewrite(artifact: Path, dest: Path, edit: dict[str, bytes | None],
             order: list[str] | None = None) -> Path:
    """Copy ``artifact`` member by member, replacing (bytes) or dropping (None) members."""
    with tarfile.open(artifact) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    with tarfile.open(dest, "w") as out:
        for name in order or list(members):
            data = edit.get(name, members.get(name))
            if data is None:
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return dest


def _refused(tmp_path: Path, artifact: Path, words: str) -> None:
    out = tmp_path / f"refused-{artifact.stem}"
    out.mkdir()
    with pytest.raises(InvalidInput, match=words):
        unpack_artifact(artifact, out)


def _cut_inside(artifact: Path, member: str, dest: Path) -> Path:
    with tarfile.open(artifact) as tar:
        info = tar.getmember(member)
    dest.write_bytes(artifact.read_bytes()[: info.offset_data + info.size // 2])
    return dest


def test_truncated_file_is_refused(tmp_path: Path, artifact: Path) -> None:
    for member in ("rootfs.tar.gz", "vmlinux.gz", "initrd.img.gz"):
        cut = _cut_inside(artifact, member, tmp_path / f"cut-{member}.corral-template")
        _refused(tmp_path, cut, "truncated|incomplete")
    cut = tmp_path / "cut-between.corral-template"
    with tarfile.open(artifact) as tar:
        cut.write_bytes(artifact.read_bytes()[: tar.getmember("vmlinux.gz").offset])
    _refused(tmp_path, cut, "incomplete: initrd.img, vmlinux missing")


def test_bad_checksum_is_refused(tmp_path: Path, artifact: Path) -> None:
    bad = tmp_path / "bad.corral-template"
    import gzip

    _rewrite(artifact, bad, {"vmlinux.gz": gzip.compress(b"\x7fELF not the kernel")})
    _refused(tmp_path, bad, "checksum mismatch for vmlinux")


def test_missing_metadata_is_refused(tmp_path: Path, artifact: Path) -> None:
    bad = _rewrite(artifact, tmp_path / "nometa.corral-template", {"metadata.json": None})
    _refused(tmp_path, bad, "missing metadata")


def test_malformed_metadata_is_refused(tmp_path: Path, artifact: Path) -> None:
    bad = _rewrite(artifact, tmp_path / "m.corral-template", {"metadata.json": b"{not json"})
    _refused(tmp_path, bad, "not valid JSON")
    worse = _rewrite(artifact, tmp_path / "n.corral-template",
                     {"metadata.json": json.dumps({"name": "x"}).encode()})
    _refused(tmp_path, worse, "lacks version, os, arch, files")


def test_missing_payload_and_extra_member_are_refused(tmp_path: Path, artifact: Path) -> None:
    short = _rewrite(artifact, tmp_path / "s.corral-template", {"initrd.img.gz": None})
    _refused(tmp_path, short, "initrd.img missing")
    extra = _rewrite(artifact, tmp_path / "e.corral-template", {"evil.sh": b"rm -rf /"},
                     order=["metadata.json", "rootfs.tar.gz", "vmlinux.gz", "initrd.img.gz",
                            "evil.sh"])
    _refused(tmp_path, extra, "unexpected member 'evil.sh'")


def test_broken_rootfs_archive_with_matching_checksum_is_refused(tmp_path: Path) -> None:
    source = make_template(tmp_path / "src")
    garbage = b"\x1f\x8b\x08\x00" + b"definitely not gzip data" * 10
    (source / "rootfs.tar.gz").write_bytes(garbage)
    meta = json.loads((source / "metadata.json").read_text())
    meta["files"]["rootfs.tar.gz"] = sha256_file(source / "rootfs.tar.gz")
    (source / "metadata.json").write_text(json.dumps(meta))
    dest = tmp_path / "broken.corral-template"
    export_template(source, dest)
    _refused(tmp_path, dest, "root filesystem archive is broken")


def test_service_import_is_all_or_nothing(tmp_path: Path, artifact: Path) -> None:
    store = TemplateService(tmp_path / "store")
    cut = _cut_inside(artifact, "vmlinux.gz", tmp_path / "cut.corral-template")
    with pytest.raises(InvalidInput):
        store.import_file(cut)
    assert list((tmp_path / "store").iterdir()) == []  # no staging dir, no half template
    image = store.import_file(artifact)
    assert image.name == "mini" and image.kernel.is_file()
    with pytest.raises(Conflict, match="already installed"):
        store.import_file(artifact)
    store.users = lambda name: ["web1"]
    dropped: list[str] = []
    store.on_removed.append(dropped.append)
    assert store.import_file(artifact, replace=True).name == "mini"  # in use: replaced, as
    assert dropped == ["mini"]  # build does; the base images are dropped
    with pytest.raises(Conflict, match="web1"):
        store.delete("mini")
    store.users = lambda name: []
    store.delete("mini")
    assert [t.name for t in store.list()] == []


def test_export_refuses_a_damaged_store_entry(tmp_path: Path) -> None:
    source = make_template(tmp_path / "src")
    (source / "vmlinux").write_bytes(b"changed")
    with pytest.raises(InvalidInput, match="damaged"):
        export_template(source, tmp_path / "x.corral-template")
    assert not (tmp_path / "x.corral-template").exists()


@pytest.mark.parametrize("member", ["rootfs.tar.gz", "vmlinux.gz", "initrd.img.gz"])
@pytest.mark.parametrize("where", ["middle", "trailer", "crc"])
def test_byte_flipped_artifact_is_a_clear_corrupt_template(
    tmp_path: Path, artifact: Path, member: str, where: str
) -> None:
    with tarfile.open(artifact) as tar:
        info = tar.getmember(member)
    # 16 bytes flipped in the compressed data or over the gzip trailer; or only the CRC
    # (gzip.BadGzipFile: CRC check failed, once an uncaught 500)
    at = info.offset_data + {"middle": info.size // 2, "trailer": info.size - 16,
                             "crc": info.size - 8}[where]
    data = bytearray(artifact.read_bytes())
    for i in range(at, at + (4 if where == "crc" else 16)):
        data[i] ^= 0xFF
    bad = tmp_path / "flipped.corral-template"
    bad.write_bytes(bytes(data))
    store = TemplateService(tmp_path / "store")
    with pytest.raises(InvalidInput, match="corrupt"):
        store.import_file(bad)
    assert list((tmp_path / "store").iterdir()) == []  # nothing half-installed
