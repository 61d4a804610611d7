"""restore --as and clone keep every NIC (new MACs and addresses, same networks), every
resource key and the bandwidth rules, and say what changed (corrald, fake driver)."""

from __future__ import annotations

import ipaddress
import json
import time
from pathlib import Path

from corral.client import CorralClient
from corral.client.backups import BackupCalls
from corral.wire.models import (
    AddNicRequest,
    CreateNetworkRequest,
    CreateRequest,
    NicModel,
    SetBandwidthRequest,
)
from tests.integration.conftest import Daemon

LIMITS = {"cpu_limit": "50", "cpu_shares": "512", "cpu_pin": "0", "memory_min": "64M",
          "io_read_bps": "10M", "io_write_bps": "5M", "io_iops": "300"}
KEYS = ("cpus", "memory", "cpu_limit", "cpu_shares", "cpu_pin", "memory_min", "swap",
        "io_read_bps", "io_write_bps", "io_iops", "pids", "max_cpus")


def _source(c: CorralClient, name: str = "web") -> None:
    """A stopped container with NICs on two networks, limits and a bandwidth rule."""
    c.create_network(CreateNetworkRequest(name="lan", type="bridged",
                                          subnets=["10.5.0.0/24"], gateways=["10.5.0.1"]))
    c.create_network(CreateNetworkRequest(name="back", type="bridged",
                                          subnets=["10.6.0.0/24"], gateways=["10.6.0.1"]))
    op = c.create_instance(CreateRequest(name=name, type="ct", template="tiny", disk="64M"))
    assert c.wait(op.id, timeout=30).status == "success"
    c.add_nic(name, AddNicRequest(network="lan"))
    c.add_nic(name, AddNicRequest(network="back"))
    c.set_resources(name, LIMITS)
    c.set_traffic_class("local", ["10.0.0.0/8"])
    c.set_bandwidth(name, SetBandwidthRequest(traffic_class="local", rate="10mbit",
                                              ceil="50mbit"))


def _nics(c: CorralClient, name: str) -> list[NicModel]:
    return sorted(c.list_nics(name), key=lambda n: n.index)


def _assert_carried(c: CorralClient, source: str, copy: str, said: str) -> None:
    old, new = _nics(c, source), _nics(c, copy)
    assert [(n.index, n.network) for n in new] == [(0, "lan"), (1, "back")]
    for before, after in zip(old, new, strict=True):
        assert after.mac != before.mac
        assert after.addresses != before.addresses
        subnet = ipaddress.ip_network("10.5.0.0/24" if after.network == "lan" else "10.6.0.0/24")
        assert all(ipaddress.ip_address(a) in subnet for a in after.addresses)
        line = (f"{copy}: NIC {after.guest_device} on {after.network}, {after.addresses[0]} "
                f"(was {before.addresses[0]}), new MAC {after.mac} (was {before.mac})")
        assert line in said, f"{line!r} not in:\n{said}"  # the whole answer (seen once in CI)
    src, dst = c.get_instance(source).resources, c.get_instance(copy).resources
    assert {k: getattr(dst, k) for k in KEYS} == {k: getattr(src, k) for k in KEYS}
    assert dst.cpu_limit == 50 and dst.io_iops == 300 and dst.memory_min == 64 << 20
    assert f"{copy}: limits kept: cpu_limit=50 cpu_shares=512 cpu_pin=0" in said
    rules = [(r.traffic_class, r.direction, r.rate, r.ceil) for r in c.list_bandwidth(copy)]
    assert rules == [(r.traffic_class, r.direction, r.rate, r.ceil)
                     for r in c.list_bandwidth(source)]
    assert len(rules) == 2 and f"{copy}: bandwidth local in 10mbit/50mbit" in said


def _backup(daemon: Daemon, tmp_path: Path, name: str = "web") -> str:
    daemon.cli("backup", "target", "add", "nas", str(tmp_path / "nas"), check=True)
    daemon.cli("backup", "create", name, "--to", "nas", check=True)
    with daemon.client() as c:
        (made,) = BackupCalls(c).backups("nas", name)
    return made.id


def test_restore_as_keeps_nics_limits_and_bandwidth(daemon: Daemon, tmp_path: Path) -> None:
    with daemon.client() as c:
        _source(c)
        backup = _backup(daemon, tmp_path)
        manifest = json.loads((tmp_path / "nas" / "manifests" / f"{backup}.json").read_text())
        assert [n["network"] for n in manifest["instance"]["nics"]] == ["lan", "back"]
        done = daemon.cli("restore", backup, "--to", "nas", "--as", "copy", check=True)
        _assert_carried(c, "web", "copy", done.stdout)

        bare = daemon.cli("restore", backup, "--to", "nas", "--as", "bare", "--no-nics",
                          check=True)
        assert "NICs not copied (--no-nics)" in bare.stdout
        assert _nics(c, "bare") == [] and c.list_bandwidth("bare") == []
        assert c.get_instance("bare").resources.cpu_limit == 50


def test_restore_refuses_a_gone_network_and_leaves_nothing(daemon: Daemon,
                                                           tmp_path: Path) -> None:
    with daemon.client() as c:
        _source(c)
        backup = _backup(daemon, tmp_path)
        c.remove_nic("web", 1)
        c.delete_network("back")
        before = sorted(p.name for p in (daemon.state_dir / "instances").iterdir())
        refused = daemon.cli("restore", backup, "--to", "nas", "--as", "copy")
        assert refused.returncode == 1
        assert "network 'back'" in refused.stderr and "--no-nics" in refused.stderr
        assert "copy" not in {i.name for i in c.list_instances()}
        assert sorted(p.name for p in (daemon.state_dir / "instances").iterdir()) == before
        assert {n.instance for n in c.list_nics()} == {"web"}
        daemon.cli("restore", backup, "--to", "nas", "--as", "copy", "--no-nics", check=True)
        assert _nics(c, "copy") == []


def test_an_old_manifest_without_nics_still_restores(daemon: Daemon, tmp_path: Path) -> None:
    with daemon.client() as c:
        _source(c)
        backup = _backup(daemon, tmp_path)
        path = tmp_path / "nas" / "manifests" / f"{backup}.json"
        data = json.loads(path.read_text())
        for key in ("nics", "bandwidth"):  # as Corral wrote it before
            data["instance"].pop(key, None)
        path.write_text(json.dumps(data))
        done = daemon.cli("restore", backup, "--to", "nas", "--as", "old", check=True)
        assert "the backup holds no NICs" in done.stdout
        assert _nics(c, "old") == []
        assert c.get_instance("old").resources.io_write_bps == 5 << 20


def test_restore_of_a_deleted_instance_takes_its_free_addresses_again(
        daemon: Daemon, tmp_path: Path) -> None:
    with daemon.client() as c:
        _source(c)
        backup = _backup(daemon, tmp_path)
        old = _nics(c, "web")
        c.wait(c.delete_instance("web").id)
        for _ in range(200):  # the network service forgets its NICs on the deleted event
            if not c.list_nics():
                break
            time.sleep(0.05)
        assert c.list_nics() == []
        done = daemon.cli("restore", backup, "--to", "nas", check=True)
        new = _nics(c, "web")
        assert [n.addresses for n in new] == [n.addresses for n in old]
        assert all(a.mac != b.mac for a, b in zip(old, new, strict=True))
        assert "(was" not in done.stdout.split("new MAC")[0]


def test_clone_keeps_nics_limits_and_bandwidth(daemon: Daemon) -> None:
    with daemon.client() as c:
        _source(c, "src")
        done = daemon.cli("clone", "src", "copy", check=True)
        _assert_carried(c, "src", "copy", done.stdout)
        bare = daemon.cli("clone", "src", "bare", "--no-nics", check=True)
        assert "NICs not copied (--no-nics)" in bare.stdout
        assert _nics(c, "bare") == [] and c.list_bandwidth("bare") == []


def test_clone_into_a_full_network_leaves_nothing(daemon: Daemon) -> None:
    with daemon.client() as c:
        c.create_network(CreateNetworkRequest(name="tiny", type="bridged",
                                              subnets=["10.7.0.0/30"], gateways=["10.7.0.1"]))
        op = c.create_instance(CreateRequest(name="src", type="ct", template="tiny"))
        assert c.wait(op.id, timeout=30).status == "success"
        c.add_nic("src", AddNicRequest(network="tiny"))  # its only free address
        refused = daemon.cli("clone", "src", "copy")
        assert refused.returncode == 1 and "no free IPv4 address" in refused.stderr
        assert "copy" not in {i.name for i in c.list_instances()}
        assert {n.instance for n in c.list_nics()} == {"src"}
