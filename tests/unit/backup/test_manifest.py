"""The manifest format: format 2 (root + data disks) and format-1 manifests (root only)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from corral.backup.manifest import (
    ChunkRef,
    DataDiskBackup,
    InstanceInfo,
    Manifest,
    Stats,
)
from corral.domain.errors import InvalidInput

MiB = 1 << 20
FORMAT_1 = json.dumps({  # as the root-only Corral wrote it (fields in its order)
    "chunk_size": 4 * MiB, "chunks": [[0, "aa" * 32, 4 * MiB], [3, "bb" * 32, 1024]],
    "consistency": "online", "created_at": "2026-11-20T10:00:00+00:00",
    "disk_size": 64 * MiB, "encrypted": False, "format": 1, "id": "web-20261120T100000Z-abcd",
    "instance": {"id": 101, "kind": "ct", "name": "web", "privileged": False,
                 "resources": {"disk": 64 * MiB}, "template": "tiny"},
    "key_fingerprint": None, "method": "hash", "parent": None,
    "stats": {"new_bytes": 1, "new_chunks": 1, "read_bytes": 1, "reused_bytes": 0,
              "seconds": 0.1, "stored_bytes": 1, "zero_bytes": 0},
    "tracking": None,
}).encode()


def test_a_format_1_manifest_reads_as_the_root_disk_alone() -> None:
    m = Manifest.from_json(FORMAT_1)
    assert (m.format, m.disks, m.disk_size) == (1, [], 64 * MiB)
    assert [(d.name, d.size, len(d.chunks)) for d in m.all_disks()] == [("root", 64 * MiB, 2)]
    assert m.names == {"aa" * 32, "bb" * 32}
    assert m.disk("data") is None and m.total_size == 64 * MiB


def test_format_2_round_trips_every_disk() -> None:
    m = Manifest(
        id="db-x", instance=InstanceInfo("db", 7, "ct", "tiny", {}),
        created_at=datetime(2026, 11, 26, tzinfo=UTC), disk_size=8 * MiB, chunk_size=4 * MiB,
        chunks=[ChunkRef(0, "aa" * 32, 4 * MiB)], stats=Stats(new_bytes=5), tracking="t1",
        disks=[DataDiskBackup("data", 12 * MiB, 1, [ChunkRef(2, "cc" * 32, 4 * MiB)],
                              "/srv/data", "dirty-bitmap"),
               DataDiskBackup("empty", 4 * MiB, 2, [])],
    )
    raw = json.loads(m.to_json())
    assert raw["format"] == 2 and [d["name"] for d in raw["disks"]] == ["data", "empty"]
    back = Manifest.from_json(m.to_json())
    assert back == m
    assert back.names == {"aa" * 32, "cc" * 32}
    assert [(d.name, d.method) for d in back.all_disks()] == [
        ("root", "hash"), ("data", "dirty-bitmap"), ("empty", "hash")]
    assert back.total_size == 24 * MiB


def test_an_unknown_format_is_refused() -> None:
    raw = json.loads(FORMAT_1)
    raw["format"] = 3
    with pytest.raises(InvalidInput, match="format 3"):
        Manifest.from_json(json.dumps(raw).encode())
    raw["format"] = 2
    raw["disks"] = [{"name": "data"}]  # no size, no chunks
    with pytest.raises(InvalidInput, match="unreadable"):
        Manifest.from_json(json.dumps(raw).encode())


def test_nics_and_bandwidth_round_trip_and_older_manifests_have_none() -> None:
    assert Manifest.from_json(FORMAT_1).instance.nics is None  # "the backup holds no NICs"
    nics = [{"index": 0, "network": "lan", "addresses": ["10.5.0.2"], "mac": "02:c0:00:00:00:01",
             "antispoof": True}]
    rules = [{"traffic_class": "local", "direction": "in", "rate": 10**7, "ceil": 5 * 10**7}]
    data = json.loads(FORMAT_1)
    data["instance"].update(nics=nics, bandwidth=rules, added_later={"x": 1})  # unknown: ignored
    info = Manifest.from_json(json.dumps(data).encode()).instance
    assert (info.nics, info.bandwidth) == (nics, rules)
    again = Manifest.from_json(Manifest.from_json(json.dumps(data).encode()).to_json())
    assert again.instance == info
