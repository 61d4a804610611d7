"""Networks, NICs, classes, bandwidth and accounting through a real corrald (fake driver).

The fake driver takes NICs as data; the network backend renders the real nftables ruleset and
tc trees into files in the state directory instead of applying them (``RecordingBackend``).
"""

from __future__ import annotations

import json
import signal

import pytest

from corral.client import ApiError, CorralClient
from corral.host.netfeatures import probe
from corral.wire.models import (
    AddNicRequest,
    CreateNetworkRequest,
    CreateRequest,
    SetBandwidthRequest,
)
from tests.integration.conftest import Daemon, start_daemon, stop_daemon


def _instance(c: CorralClient, name: str, start: bool = False) -> None:
    op = c.create_instance(CreateRequest(name=name, type="ct", template="tiny", start=start))
    assert c.wait(op.id, timeout=30).status == "success"


def _lan(c: CorralClient) -> None:
    c.create_network(CreateNetworkRequest(name="lan", type="bridged",
                                          subnets=["10.5.0.0/24", "fd00:5::/64"],
                                          gateways=["10.5.0.1"]))


def test_network_lifecycle_and_refusals(daemon: Daemon) -> None:
    with daemon.client() as c:
        _lan(c)
        nat = c.create_network(CreateNetworkRequest(name="priv", type="nat",
                                                    subnets=["192.168.77.0/24"]))
        assert nat.gateways == ["192.168.77.1"] and nat.bridge == "cbr2"
        assert [n.name for n in c.list_networks()] == ["lan", "priv"]
        with pytest.raises(ApiError) as dup:
            _lan(c)
        assert dup.value.status == 409
        with pytest.raises(ApiError) as bad:
            c.create_network(CreateNetworkRequest(name="x", type="token-ring"))
        assert bad.value.status == 400
        if not probe("vlan_8021q").available:
            with pytest.raises(ApiError) as vlan:
                c.create_network(CreateNetworkRequest(name="v10", type="vlan", uplink="eth0",
                                                      vlan=10))
            assert vlan.value.status == 422 and "802.1Q" in vlan.value.message
            assert "v10" not in [n.name for n in c.list_networks()]
        ruleset = (daemon.state_dir / "network" / "ruleset.nft").read_text()
        assert 'ip saddr 192.168.77.0/24 oifname != "cbr2" masquerade' in ruleset
        c.delete_network("priv")
        assert [n.name for n in c.list_networks()] == ["lan"]
    info = daemon.cli("host", "info", "--format", "json", check=True)
    features = json.loads(info.stdout)["features"]
    assert "vlan_8021q" in features and "bridge_vlan_filtering" in features


def test_nics_ipam_limits_hotplug_and_cleanup(daemon: Daemon) -> None:
    with daemon.client() as c:
        _lan(c)
        _instance(c, "web")
        first = c.add_nic("web", AddNicRequest(network="lan"))
        assert first.addresses == ["10.5.0.2", "fd00:5::100"]  # .1 is the gateway
        assert first.host_device.endswith("n0") and first.guest_device == "eth0"
        with pytest.raises(ApiError) as dup:
            c.add_nic("web", AddNicRequest(network="lan", ips=["10.5.0.2"]))
        assert dup.value.status == 409 and "already assigned" in dup.value.message
        with pytest.raises(ApiError) as outside:
            c.add_nic("web", AddNicRequest(network="lan", ips=["10.9.0.2"]))
        assert outside.value.status == 400
        for _ in range(15):
            c.add_nic("web", AddNicRequest(network="lan", ips=["auto4"]))
        with pytest.raises(ApiError) as full:
            c.add_nic("web", AddNicRequest(network="lan", ips=["auto4"]))
        assert full.value.status == 409 and "16 NICs" in full.value.message
        assert len(c.list_nics("web")) == 16
        nics_file = json.loads((daemon.state_dir / "instances" / "101" / "nics.json")
                               .read_text())
        assert len(nics_file) == 16
        ruleset = (daemon.state_dir / "network" / "ruleset.nft").read_text()
        assert f'"{first.host_device}" . {first.mac}' in ruleset
        assert f'"{first.host_device}" . 10.5.0.2' in ruleset
        # Hot-add on a running instance reaches the driver.
        _instance(c, "db", start=True)
        hot = c.add_nic("db", AddNicRequest(network="lan", mac="02:C0:AA:00:00:01"))
        assert hot.mac == "02:c0:aa:00:00:01"
        attached = json.loads((daemon.state_dir / "instances" / "102" / "fake-nics.json")
                              .read_text())
        assert attached == [0]
        c.remove_nic("db", 0)
        assert json.loads((daemon.state_dir / "instances" / "102" / "fake-nics.json")
                          .read_text()) == []
        with pytest.raises(ApiError) as busy:
            c.delete_network("lan")
        assert busy.value.status == 409 and "web" in busy.value.message
        # Deleting the instance frees its NICs, addresses and rules.
        assert c.wait(c.delete_instance("web").id, timeout=30).status == "success"
        for _ in range(50):
            if not c.list_nics():
                break
            import time
            time.sleep(0.1)
        assert c.list_nics() == []
        ruleset = (daemon.state_dir / "network" / "ruleset.nft").read_text()
        assert first.mac not in ruleset
        c.delete_network("lan")


def test_accounting_and_bandwidth_survive_a_daemon_restart(daemon: Daemon) -> None:
    with daemon.client() as c:
        _lan(c)
        _instance(c, "web")
        c.add_nic("web", AddNicRequest(network="lan"))
        c.set_traffic_class("local", ["10.0.0.0/8", "fd00::/8"])
        c.set_traffic_class("world", ["0.0.0.0/0", "::/0"])
        c.set_bandwidth("web", SetBandwidthRequest(traffic_class="world", rate="10mbit",
                                                   ceil="30mbit"))
        with pytest.raises(ApiError) as low:
            c.set_bandwidth("web", SetBandwidthRequest(traffic_class="world", rate="10mbit",
                                                       ceil="5mbit"))
        assert low.value.status == 400
        with pytest.raises(ApiError) as missing:
            c.set_bandwidth("web", SetBandwidthRequest(traffic_class="moon", rate="1mbit"))
        assert missing.value.status == 404
        tc_text = (daemon.state_dir / "network" / "tc-lan.txt").read_text()
        assert "rate 10000000bit ceil 30000000bit" in tc_text
        assert len(c.list_bandwidth("web")) == 2
        # The "kernel" (recording backend) counts some traffic.
        counters = daemon.state_dir / "network" / "counters.json"
        data = json.loads(counters.read_text())
        data["bridge"]["i101_world_out"] = [10, 12345]
        counters.write_text(json.dumps(data))
        rows = {(t.traffic_class, t.direction): t.bytes for t in c.traffic("web")}
        assert rows[("world", "out")] == 12345 and rows[("local", "in")] == 0
        assert 'corral_traffic_bytes_total{instance="web",class="world",direction="out"} 12345' \
            in c.metrics()
    stop_daemon(daemon, signal.SIGTERM)
    counters.unlink()  # as after a host reboot: the kernel forgot, the database did not
    again = start_daemon(daemon.state_dir)
    try:
        with again.client() as c:
            rows = {(t.traffic_class, t.direction): t.bytes for t in c.traffic("web")}
            assert rows[("world", "out")] == 12345
            ruleset = (again.state_dir / "network" / "ruleset.nft").read_text()
            assert "counter i101_world_out { packets 10 bytes 12345 }" in ruleset
            assert ruleset.count("chain antispoof") == 2  # replaced, never duplicated
        out = again.cli("netstat", "web", check=True).stdout
        assert "12345" in out
        for args in (("network", "list"), ("nic", "list", "web"), ("bandwidth", "list"),
                     ("network", "class", "list"), ("network", "info", "lan")):
            again.cli(*args, check=True)
        refused = again.cli("nic", "add", "web", "--network", "lan", "--ip", "10.5.0.2")
        assert refused.returncode == 1 and "already assigned" in refused.stderr
    finally:
        stop_daemon(again)


def test_list_and_info_show_assigned_nic_addresses_for_vms_and_containers(
    daemon: Daemon,
) -> None:
    with daemon.client() as c:
        _lan(c)
        op = c.create_instance(CreateRequest(name="vm1", type="vm", template="tiny"))
        assert c.wait(op.id, timeout=30).status == "success"
        _instance(c, "ct1")
    daemon.cli("nic", "add", "vm1", "--network", "lan", "--ip", "10.5.0.7",
               "--ip", "fd00:5::7", check=True)
    daemon.cli("nic", "add", "ct1", "--network", "lan", "--ip", "10.5.0.8", check=True)
    rows = {r["name"]: r for r in json.loads(
        daemon.cli("list", "--format", "json", check=True).stdout)}
    assert rows["vm1"]["ip"] == ["10.5.0.7", "fd00:5::7"]
    assert rows["ct1"]["ip"] == ["10.5.0.8"]
    info = json.loads(daemon.cli("info", "vm1", "--format", "json", check=True).stdout)
    assert info["ip"] == ["10.5.0.7", "fd00:5::7"]
    table = daemon.cli("info", "vm1", check=True).stdout
    assert "10.5.0.7, fd00:5::7" in table
    with daemon.client() as c:
        assert c.get_instance("vm1").ip == ["10.5.0.7", "fd00:5::7"]


def test_overlapping_subnets_are_refused_naming_the_network(daemon: Daemon) -> None:
    with daemon.client() as c:
        c.create_network(CreateNetworkRequest(name="lan", type="bridged",
                                              subnets=["10.10.0.0/24"]))
        for subnets in (["10.10.0.0/25"], ["10.0.0.0/8"], ["10.10.0.128/26", "fd00:9::/64"]):
            with pytest.raises(ApiError) as overlap:
                c.create_network(CreateNetworkRequest(name="inner", type="bridged",
                                                      subnets=subnets))
            assert overlap.value.status == 409
            assert "overlaps 10.10.0.0/24 of network 'lan'" in overlap.value.message
        with pytest.raises(ApiError) as itself:
            c.create_network(CreateNetworkRequest(name="inner", type="bridged",
                                                  subnets=["10.20.0.0/24", "10.20.0.0/25"]))
        assert itself.value.status == 400 and "overlaps" in itself.value.message
        assert [n.name for n in c.list_networks()] == ["lan"]
        plugged = json.loads((daemon.state_dir / "network" / "plugged.json").read_text())
        assert plugged["networks"] == ["lan"]  # nothing half-made for the refused ones
        # Next to it, not over it, is fine.
        c.create_network(CreateNetworkRequest(name="next", type="bridged",
                                              subnets=["10.10.1.0/24"]))
    refused = daemon.cli("network", "create", "inner", "--type", "bridged",
                         "--subnet", "10.10.0.0/25")
    assert refused.returncode != 0 and "network 'lan'" in refused.stderr, refused.stderr


def test_traffic_class_names_take_a_dash_like_other_names(daemon: Daemon) -> None:
    with daemon.client() as c:
        _lan(c)
        _instance(c, "web")
        c.add_nic("web", AddNicRequest(network="lan"))
        c.set_traffic_class("peer-dc", ["10.0.0.0/8"])
        c.set_bandwidth("web", SetBandwidthRequest(traffic_class="peer-dc", rate="1mbit"))
        assert "peer-dc" in [t.name for t in c.list_traffic_classes()]
        rows = {(t.traffic_class, t.direction) for t in c.traffic("web")}
        assert ("peer-dc", "in") in rows and ("peer-dc", "out") in rows
        for bad in ("-dc", "dc-", "Peer", "9dc"):
            with pytest.raises(ApiError) as refused:
                c.set_traffic_class(bad, ["10.0.0.0/8"])
            assert refused.value.status == 400 and "DNS label" in refused.value.message
