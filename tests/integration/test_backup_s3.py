"""The backup engine against a real S3 server (moto_server), end to end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.backup.crypto import Codec, generate_key_file
from corral.backup.engine import backup_image, restore_image
from corral.backup.manifest import InstanceInfo
from corral.backup.store import ChunkStore
from corral.backup.targets import S3Target, open_target
from tests.integration.s3server import ACCESS_KEY, SECRET_KEY, s3_server

MiB = 1 << 20


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with s3_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


def s3_store(endpoint: str, bucket: str, codec: Codec | None = None) -> ChunkStore:
    target = open_target(f"s3://{bucket}/corral?endpoint={endpoint}", ACCESS_KEY, SECRET_KEY)
    assert isinstance(target, S3Target)
    target.ensure_bucket()
    return ChunkStore(target, codec or Codec())


def test_s3_round_trip_incremental_verify_and_gc(endpoint: str, tmp_path: Path) -> None:
    image = tmp_path / "root.img"
    with image.open("wb") as f:
        f.truncate(32 * MiB)
        f.write(os.urandom(8 * MiB))
    store = s3_store(endpoint, "backups")
    info = InstanceInfo("web", 101, "vm", "tiny", {"disk": 32 * MiB})
    first = backup_image(image, store, info, chunk_size=MiB)
    with image.open("r+b") as f:
        f.seek(2 * MiB)
        f.write(os.urandom(1000))
    second = backup_image(image, store, info, chunk_size=MiB, previous=first)
    assert second.stats.new_chunks == 1

    fresh = s3_store(endpoint, "backups")  # a new client sees what the first one committed
    assert [m.id for m in fresh.manifests()] == [first.id, second.id]
    out = tmp_path / "out.img"
    restore_image(fresh.manifest(second.id), fresh, out)
    assert out.read_bytes() == image.read_bytes()

    fresh.delete_manifest(first.id)
    assert fresh.garbage_collect() == (1, 8)
    damaged = sorted(second.names)[3]
    fresh.target.put(f"chunks/{damaged[:2]}/{damaged}", b"CZ\x01\x00garbage")
    assert fresh.verify().damaged_backups == [second.id]


def test_s3_encrypted_store(endpoint: str, tmp_path: Path) -> None:
    key = tmp_path / "key"
    generate_key_file(key)
    image = tmp_path / "root.img"
    image.write_bytes(b"tenant data " * 100_000)
    store = s3_store(endpoint, "sealed", Codec.from_key_file(key))
    manifest = backup_image(image, store, InstanceInfo("db", 102, "ct", "tiny", {}))
    out = tmp_path / "out.img"
    restore_image(manifest, s3_store(endpoint, "sealed", Codec.from_key_file(key)), out)
    assert out.read_bytes() == image.read_bytes()
