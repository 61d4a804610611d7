"""The backup engine on real image files and a local directory target."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from corral.backup.crypto import Codec, generate_key_file
from corral.backup.engine import backup_image, chunks_with_data, restore_image
from corral.backup.manifest import InstanceInfo
from corral.backup.store import ChunkStore
from corral.backup.targets import LocalTarget
from corral.domain.errors import HostFailure, InvalidInput

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
