"""The backup engine on real image files and a local directory target."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from corral.backup.crypto import Codec, generate_key_file
from corral.backup.engine import (
    DataImage,
    backup_disks,
    backup_image,
    chunks_with_data,
    restore_image,
)
from corral.backup.manifest import InstanceInfo, manifest_key
from corral.backup.store import ChunkStore
from corral.backup.targets import LocalTarget
from corral.domain.errors import HostFailure, InvalidInput, NotFound

MiB = 1 << 20
CHUNK = 1 * MiB


def info(name: str = "web") -> InstanceInfo:
    return InstanceInfo(name=name, id=101, kind="ct", template="tiny",
                        resources={"disk": 64 * MiB})


def make_image(path: Path, size: int = 64 * MiB, data_ranges: int = 8) -> None:
    """A sparse image with random data in ``data_ranges`` 4 MiB regions, holes elsewhere."""
    with path.open("wb") as f:
        f.truncate(size)
        for n in range(data_ranges):
            f.seek(n * 8 * MiB)
            f.write(os.urandom(4 * MiB))


def store_at(path: Path, codec: Codec | None = None) -> ChunkStore:
    return ChunkStore(LocalTarget(path), codec or Codec())


def test_round_trip_is_byte_identical_and_skips_holes(tmp_path: Path) -> None:
    image = tmp_path / "root.img"
    make_image(image)
    store = store_at(tmp_path / "store")
    manifest = backup_image(image, store, info(), chunk_size=CHUNK)
    assert manifest.stats.new_bytes == 32 * MiB  # 8 regions of 4 MiB; the holes not stored
    assert len(manifest.chunks) == 32
    restored = tmp_path / "restored.img"
    restore_image(store.manifest(manifest.id), store, restored)
    assert restored.read_bytes() == image.read_bytes()
    assert restored.stat().st_blocks * 512 < 40 * MiB  # the restored image stays sparse


def test_zero_chunks_with_data_extents_are_not_stored(tmp_path: Path) -> None:
    image = tmp_path / "root.img"
    image.write_bytes(bytes(3 * MiB) + b"x" * MiB)  # written zeros: not a hole
    manifest = backup_image(image, store_at(tmp_path / "s"), info(), chunk_size=CHUNK)
    assert [c.index for c in manifest.chunks] == [3]
    assert manifest.stats.zero_bytes == 3 * MiB


def test_second_backup_after_one_percent_change_stores_about_one_percent(
    tmp_path: Path,
) -> None:
    image = tmp_path / "root.img"
    with image.open("wb") as f:
        f.write(os.urandom(64 * MiB))
    store = store_at(tmp_path / "store")
    first = backup_image(image, store, info(), chunk_size=CHUNK)
    change = 64 * MiB // 100  # 1 %, contiguous as a file's extent is
    with image.open("r+b") as f:
        f.seek(10 * MiB + 4096)
        f.write(os.urandom(change))
    second = backup_image(image, store, info(), chunk_size=CHUNK, previous=first)
    assert change <= second.stats.new_bytes <= change + 2 * CHUNK
    assert second.stats.new_chunks == 1  # 655 KiB within one 1 MiB chunk
    assert second.parent == first.id
    out = tmp_path / "out.img"
    restore_image(second, store, out)
    assert out.read_bytes() == image.read_bytes()


def test_dirty_chunk_set_reads_only_those_chunks(tmp_path: Path) -> None:
    image = tmp_path / "root.img"
    make_image(image, size=16 * MiB, data_ranges=2)
    store = store_at(tmp_path / "store")
    first = backup_image(image, store, info(), chunk_size=CHUNK)
    with image.open("r+b") as f:
        f.seek(9 * MiB)
        f.write(b"new" * 1000)
    second = backup_image(image, store, info(), chunk_size=CHUNK, previous=first, changed={9})
    assert second.method == "dirty-bitmap"
    assert second.stats.read_bytes == CHUNK
    out = tmp_path / "out.img"
    restore_image(second, store, out)
    assert out.read_bytes() == image.read_bytes()


def test_deduplicated_across_instances(tmp_path: Path) -> None:
    image = tmp_path / "root.img"
    make_image(image, size=16 * MiB, data_ranges=2)
    store = store_at(tmp_path / "store")
    backup_image(image, store, info("a"), chunk_size=CHUNK)
    other = backup_image(image, store, info("b"), chunk_size=CHUNK)
    assert other.stats.new_bytes == 0
    assert other.stats.reused_bytes == 8 * MiB


def test_encrypted_store_round_trip_and_key_checks(tmp_path: Path) -> None:
    key, other_key = tmp_path / "key", tmp_path / "other"
    generate_key_file(key)
    generate_key_file(other_key)
    image = tmp_path / "root.img"
    image.write_bytes(b"secret plaintext " * 200_000)
    store = store_at(tmp_path / "store", Codec.from_key_file(key))
    manifest = backup_image(image, store, info(), chunk_size=CHUNK)
    assert manifest.encrypted
    for path in (tmp_path / "store" / "chunks").rglob("*"):
        if path.is_file():
            assert b"secret plaintext" not in path.read_bytes()
    out = tmp_path / "out.img"
    restore_image(manifest, store, out)
    assert out.read_bytes() == image.read_bytes()
    with pytest.raises(InvalidInput, match="does not match"):
        store_at(tmp_path / "store", Codec.from_key_file(other_key)).open()
    with pytest.raises(InvalidInput, match="encrypted"):
        store_at(tmp_path / "store").open()
    with pytest.raises(FileExistsError):
        generate_key_file(key)


def test_short_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("abcd\n")
    with pytest.raises(InvalidInput, match="at least 32"):
        Codec.from_key_file(tmp_path / "k")


def test_verify_names_exactly_the_damaged_backups(tmp_path: Path) -> None:
    image = tmp_path / "root.img"
    make_image(image, size=16 * MiB, data_ranges=2)
    store = store_at(tmp_path / "store")
    first = backup_image(image, store, info(), chunk_size=CHUNK)
    with image.open("r+b") as f:
        f.seek(MiB)
        f.write(os.urandom(1000))
    second = backup_image(image, store, info(), chunk_size=CHUNK)
    other = backup_image(tmp_path / "root.img", store, info("other"), chunk_size=CHUNK)
    assert store.verify().ok
    only_in_first = sorted(first.names - second.names)
    assert len(only_in_first) == 1
    blob = store.target.get(f"chunks/{only_in_first[0][:2]}/{only_in_first[0]}")
    damaged = bytearray(blob)
    damaged[len(damaged) // 2] ^= 0xFF
    store.target.put(f"chunks/{only_in_first[0][:2]}/{only_in_first[0]}", bytes(damaged))
    report = store.verify()
    assert report.damaged_backups == [first.id]
    assert list(report.damaged_chunks) == only_in_first
    shared = sorted(first.names & second.names & other.names)[0]
    store.target.delete(f"chunks/{shared[:2]}/{shared}")
    report = store.verify()
    assert report.damaged_backups == sorted([first.id, second.id, other.id])
    assert report.damaged_chunks[shared] == "missing"
    with pytest.raises(HostFailure, match="damaged"):
        restore_image(second, store, tmp_path / "out.img")
    assert not (tmp_path / "out.img").exists()


class Interrupt(Exception):
    pass


def test_interrupted_backup_is_never_listed_and_its_chunks_are_collected(
    tmp_path: Path,
) -> None:
    image = tmp_path / "root.img"
    make_image(image, size=16 * MiB, data_ranges=2)
    store = store_at(tmp_path / "store")

    def stop_halfway(done: int, total: int) -> None:
        if done >= total // 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        backup_image(image, store, info(), chunk_size=CHUNK, progress=stop_halfway)
    assert store.manifests() == []
    assert store.known_chunks()  # orphans were stored
    deleted, kept = store.garbage_collect()
    assert deleted > 0 and kept == 0
    good = backup_image(image, store, info(), chunk_size=CHUNK)
    assert [m.id for m in store.manifests()] == [good.id]
    assert store.verify().ok


def test_delete_then_gc_keeps_chunks_other_backups_need(tmp_path: Path) -> None:
    image = tmp_path / "root.img"
    make_image(image, size=16 * MiB, data_ranges=2)
    store = store_at(tmp_path / "store")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    first = backup_image(image, store, info(), chunk_size=CHUNK, when=t0)
    with image.open("r+b") as f:
        f.write(os.urandom(MiB))
    second = backup_image(image, store, info(), chunk_size=CHUNK, when=t0 + timedelta(1))
    store.delete_manifest(first.id)
    deleted, kept = store.garbage_collect()
    assert deleted == 1 and kept == len(second.names)
    out = tmp_path / "out.img"
    restore_image(second, store, out)
    assert out.read_bytes() == image.read_bytes()


def test_chunks_with_data_covers_each_overlapping_chunk_once() -> None:
    extents = [(0, 10), (CHUNK - 1, CHUNK + 1), (5 * CHUNK, 7 * CHUNK)]
    assert list(chunks_with_data(extents, CHUNK)) == [0, 1, 5, 6]


# Data disks ---------------------------------------------------------------------------------
def test_data_disks_are_backed_up_deduplicated_and_restored(tmp_path: Path) -> None:
    root, data = tmp_path / "root.img", tmp_path / "data.img"
    make_image(root, 32 * MiB, 4)
    with data.open("wb") as f:  # the root's first 4 MiB again (deduplicated) + 2 MiB new
        f.truncate(24 * MiB)
        f.write(root.read_bytes()[: 4 * MiB])
        f.seek(16 * MiB)
        f.write(os.urandom(2 * MiB))
    store = store_at(tmp_path / "s")
    manifest = backup_disks(root, [DataImage("data", data, 1, "/srv/data")], store, info(),
                            chunk_size=CHUNK)
    assert manifest.stats.new_bytes == 16 * MiB + 2 * MiB  # the shared 4 MiB stored once
    assert manifest.stats.reused_bytes == 4 * MiB
    [disk] = manifest.disks
    assert (disk.name, disk.size, disk.index, disk.mount) == ("data", 24 * MiB, 1, "/srv/data")
    assert {c.name for c in disk.chunks} <= manifest.names
    again = store.manifest(manifest.id)
    for name, source in (("root", root), ("data", data)):
        out = tmp_path / f"{name}.out"
        restore_image(again, store, out, disk=name)
        assert out.read_bytes() == source.read_bytes()
    with pytest.raises(NotFound, match="no disk 'logs'"):
        restore_image(again, store, tmp_path / "x", disk="logs")


def test_incremental_per_disk_and_a_new_disk_read_whole(tmp_path: Path) -> None:
    """A changed-chunk set per disk: the root disk by its bitmap, the data disk by hash, and
    a disk the previous backup did not have cannot be incremental."""
    root, data = tmp_path / "root.img", tmp_path / "data.img"
    make_image(root, 16 * MiB, 2)
    make_image(data, 16 * MiB, 2)
    store = store_at(tmp_path / "s")
    first = backup_disks(root, [DataImage("data", data, 1)], store, info(), chunk_size=CHUNK)
    with root.open("r+b") as f:
        f.seek(9 * MiB)
        f.write(os.urandom(1000))
    with data.open("r+b") as f:
        f.seek(1 * MiB)
        f.write(os.urandom(1000))
    second = backup_disks(root, [DataImage("data", data, 1)], store, info(), chunk_size=CHUNK,
                          previous=first, changed={"root": {9}})
    assert second.method == "dirty-bitmap" and second.disks[0].method == "hash"
    assert second.stats.new_bytes == 2 * CHUNK  # one chunk of each disk
    for name, source in (("root", root), ("data", data)):
        out = tmp_path / f"{name}.out"
        restore_image(second, store, out, disk=name)
        assert out.read_bytes() == source.read_bytes()
    other = tmp_path / "other.img"
    make_image(other, 8 * MiB, 1)
    with pytest.raises(InvalidInput, match="disk 'other'"):
        backup_disks(root, [DataImage("other", other, 2)], store, info(), chunk_size=CHUNK,
                     previous=second, changed={"other": {0}})


def test_a_format_1_manifest_still_restores(tmp_path: Path) -> None:
    """A backup written before data disks were backed up (format 1, no ``disks``)."""
    image = tmp_path / "root.img"
    make_image(image, 16 * MiB, 2)
    store = store_at(tmp_path / "s")
    manifest = backup_image(image, store, info(), chunk_size=CHUNK)
    old = json.loads(manifest.to_json())
    del old["disks"]
    old["format"] = 1
    store.target.put(manifest_key(manifest.id), json.dumps(old).encode())
    read = store.manifest(manifest.id)
    assert read.format == 1 and read.disks == []
    out = tmp_path / "out.img"
    restore_image(read, store, out)
    assert out.read_bytes() == image.read_bytes()
    assert store.verify().ok
