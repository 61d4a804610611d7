"""The network layer against the real kernel, inside namespaces the tests make.

A "host" namespace plays the host (bridge, uplink, nftables, tc); guest namespaces stand in for
instances (their eth0 is the peer of the NIC's host-side device); a "world" namespace sits
behind the uplink. Traffic never leaves these namespaces.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator

import pytest

from corral.domain.errors import Unsupported
from corral.domain.network import (
    BandwidthRule,
    Direction,
    IPAddress,
    NetworkSpec,
    NetworkType,
    NicSpec,
    TrafficClass,
)
from corral.host import nft, tc
from corral.host.netfeatures import probe
from corral.network.classes import parse_class
from corral.network.nftables import FilterInput, counter_name
from corral.network.realise import HostBackend
from tests.system.net.lab import Lab, can_run

pytestmark = [pytest.mark.system, pytest.mark.skipif(bool(can_run()), reason=can_run())]

CLASSES = (parse_class("local=10.0.0.0/8,fd00::/8"), parse_class("world=0.0.0.0/0,::/0"))
MBIT = 10**6


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


@pytest.fixture
def lab() -> Iterator[Lab]:
    made = Lab()
    try:
        yield made
    finally:
        made.close()


class Bridged:
    """A bridged network (uplink 'up0' to a world namespace) with two guests."""

    def __init__(self, lab: Lab, link_rate: int = 10**9, antispoof: bool = True) -> None:
        self.lab = lab
        self.backend = HostBackend(lab.host)
        lab.host.add_veth("up0", "tmpup")  # placeholder so ensure_network finds the uplink
        lab.host.delete_link("up0")
        self.world = lab.world("up0", ["203.0.113.1/24", "2001:db8:99::1/64"],
                               [["10.1.0.0/24", "dev", "eth0"], ["fd00:1::/64", "dev", "eth0"]])
        self.net = NetworkSpec(
            1, "lan", NetworkType.BRIDGED,
            (ipaddress.ip_network("10.1.0.0/24"), ipaddress.ip_network("fd00:1::/64")),
            uplink="up0", link_rate=link_rate,
        )
        self.backend.ensure_network(self.net)
        self.nics = [
            NicSpec(101, 0, self.net, "02:c0:00:00:01:01", (ip("10.1.0.5"), ip("fd00:1::5")),
                    antispoof=antispoof),
            NicSpec(102, 0, self.net, "02:c0:00:00:01:02", (ip("10.1.0.6"), ip("fd00:1::6")),
                    antispoof=antispoof),
        ]
        self.guests = []
        for index, nic in enumerate(self.nics):
            ns = lab.guest(f"g{index}", nic.host_ifname, nic.mac,
                           [f"{nic.ipv4[0]}/24", f"{nic.ipv6[0]}/64"],
                           [["203.0.113.0/24", "dev", "eth0"],
                            ["2001:db8:99::/64", "dev", "eth0"]])
            self.backend.plug(nic)
            self.guests.append(ns)
        self.apply_filters()

    def apply_filters(self, classes: tuple[TrafficClass, ...] = CLASSES) -> None:
        self.backend.apply_filters(FilterInput(tuple(self.nics), classes,
                                               self.backend.counters()))

    def counter(self, instance: int, cls: str, direction: Direction) -> tuple[int, int]:
        return self.backend.counters()["bridge"][counter_name(instance, cls, direction)]

    def shape(self, rules: list[BandwidthRule]) -> None:
        self.backend.apply_shaping(self.net, rules, self.nics, list(CLASSES))


def test_guests_and_world_reach_each_other_over_the_bridge(lab: Lab) -> None:
    b = Bridged(lab)
    assert lab.ping(b.guests[0], "10.1.0.6")
    assert lab.ping(b.guests[0], "fd00:1::6")
    assert lab.ping(b.guests[1], "203.0.113.1")
    assert lab.ping(b.world, "10.1.0.5")


def _spoof_ip(lab: Lab, ns: str, old: str, new: str) -> None:
    from tests.system.net.lab import in_ns

    in_ns(ns, "ip", "addr", "del", old, "dev", "eth0")
    in_ns(ns, "ip", "addr", "add", new, "dev", "eth0", "nodad")


@pytest.mark.parametrize("antispoof", [True, False])
def test_forged_source_ip_and_mac_are_dropped_only_when_guarded(lab: Lab, antispoof: bool) -> None:
    from tests.system.net.lab import in_ns

    b = Bridged(lab, antispoof=antispoof)
    attacker, victim = b.guests
    assert lab.ping(attacker, "10.1.0.6")
    # A forged IPv4 source (another address of the subnet).
    _spoof_ip(lab, attacker, "10.1.0.5/24", "10.1.0.77/24")
    assert lab.ping(attacker, "10.1.0.6") is not antispoof
    _spoof_ip(lab, attacker, "10.1.0.77/24", "10.1.0.5/24")
    assert lab.ping(attacker, "10.1.0.6", count=2)
    # A forged MAC with the right IP.
    in_ns(attacker, "ip", "link", "set", "eth0", "address", "02:c0:00:00:09:09")
    in_ns(victim, "ip", "neigh", "flush", "all")
    assert lab.ping(attacker, "10.1.0.6") is not antispoof
    in_ns(attacker, "ip", "link", "set", "eth0", "address", b.nics[0].mac)
    # A forged IPv6 source.
    _spoof_ip(lab, attacker, "fd00:1::5/64", "fd00:1::77/64")
    assert lab.ping(attacker, "fd00:1::6") is not antispoof


def test_accounting_counts_a_known_transfer_per_class(lab: Lab) -> None:
    b = Bridged(lab)
    to_world, to_local = 20_000_000, 5_000_000
    got = lab.transfer(b.guests[0], b.world, "203.0.113.1", to_world)
    assert got["bytes"] == to_world
    got = lab.transfer(b.guests[0], b.guests[1], "10.1.0.6", to_local, port=5202)
    assert got["bytes"] == to_local
    world_out = b.counter(101, "world", Direction.OUT)[1]
    local_out = b.counter(101, "local", Direction.OUT)[1]
    local_in_peer = b.counter(102, "local", Direction.IN)[1]
    print(f"\nworld out {world_out} for {to_world} payload ({world_out / to_world:.4f}); "
          f"local out {local_out} for {to_local} ({local_out / to_local:.4f})")
    # L3 bytes: payload plus IP/TCP headers (~3.5 % at MSS 1448), never less than the payload.
    assert to_world <= world_out <= to_world * 1.06
    assert to_local <= local_out <= to_local * 1.06
    assert to_local <= local_in_peer <= to_local * 1.06
    # The peer only received: its outbound is ACKs, far below the payload.
    assert b.counter(102, "local", Direction.OUT)[1] < to_local * 0.1
    # Re-applying the ruleset (as a restarted daemon does) keeps every counter.
    before = b.backend.counters()
    b.apply_filters()
    after = b.backend.counters()
    for name, (packets, octets) in before["bridge"].items():
        assert after["bridge"][name][1] >= octets and after["bridge"][name][0] >= packets
    assert nft.listing(lab.host, "bridge", "corral").count("chain antispoof") == 1


def test_a_class_name_with_a_dash_counts_in_the_real_ruleset(lab: Lab) -> None:
    b = Bridged(lab)
    b.apply_filters((parse_class("peer-dc=10.0.0.0/8"),))
    assert lab.ping(b.guests[0], "10.1.0.6")
    assert b.counter(101, "peer-dc", Direction.OUT)[0] >= 1
    assert b.counter(102, "peer-dc", Direction.IN)[0] >= 1


def test_maximum_holds_within_ten_percent_both_ways(lab: Lab) -> None:
    b = Bridged(lab)
    ceil = 20 * MBIT
    b.shape([BandwidthRule(1, 101, "world", Direction.OUT, 5 * MBIT, ceil),
             BandwidthRule(2, 101, "world", Direction.IN, 5 * MBIT, ceil)])
    amount = 6_000_000  # 2.4 s at 20 Mbit/s
    out = lab.transfer(b.guests[0], b.world, "203.0.113.1", amount)
    inbound = lab.transfer(b.world, b.guests[0], "10.1.0.5", amount, port=5203)
    rates = [r["bytes"] * 8 / r["seconds"] for r in (out, inbound)]
    print(f"\nceil {ceil / MBIT} Mbit/s: out {rates[0] / MBIT:.2f}, in {rates[1] / MBIT:.2f}")
    for rate in rates:
        assert 0.9 * ceil <= rate <= 1.1 * ceil
    # Local traffic (no rule) is not held back by the world class.
    local = lab.transfer(b.guests[0], b.guests[1], "10.1.0.6", amount, port=5204)
    assert local["bytes"] * 8 / local["seconds"] > 2 * ceil


def _rate(got: dict[str, float]) -> float:
    return got["bytes"] * 8 / got["seconds"]


def test_maximum_holds_between_instances_and_the_host_on_one_bridge(lab: Lab) -> None:
    """Every path through the bridge passes the instance's port: instance to instance,
    instance to host and host to instance are held to the class's maximum, both ways."""
    b = Bridged(lab)
    lab.host.add_address(str(b.net.bridge), "10.1.0.200/24")
    # What the earlier layout left on the uplink (its tree and the ingress redirect) goes.
    tc.batch(lab.host, ["qdisc add dev up0 root handle 1: htb", "qdisc add dev up0 ingress"])
    ceil = 20 * MBIT
    b.shape([BandwidthRule(1, 101, "local", Direction.OUT, 5 * MBIT, ceil),
             BandwidthRule(2, 101, "local", Direction.IN, 5 * MBIT, ceil)])
    amount = 3_000_000  # 1.2 s at 20 Mbit/s
    paths = {
        "instance -> instance": (b.guests[0], b.guests[1], "10.1.0.6"),
        "instance <- instance": (b.guests[1], b.guests[0], "10.1.0.5"),
        "instance -> host": (b.guests[0], lab.host_ns, "10.1.0.200"),
        "host -> instance": (lab.host_ns, b.guests[0], "10.1.0.5"),
    }
    rates = {name: _rate(lab.transfer(src, dst, address, amount, port=5400 + i))
             for i, (name, (src, dst, address)) in enumerate(paths.items())}
    print("\n" + ", ".join(f"{k} {v / MBIT:.1f}" for k, v in rates.items()) + " Mbit/s")
    for name, rate in rates.items():
        assert 0.5 * ceil <= rate <= 1.3 * ceil, name
    assert {q["kind"] for q in tc.qdiscs(lab.host, "up0")} & {"htb", "ingress"} == set()
    # The other instance (no rule) still runs at full speed over the same bridge.
    free = _rate(lab.transfer(b.guests[1], lab.host_ns, "10.1.0.200", amount, port=5410))
    assert free > 3 * ceil


def test_a_lost_ifb_is_made_again_with_the_ports_redirects(lab: Lab) -> None:
    """A port's redirect names its IFB by index: a new IFB needs new redirects, or every
    packet through the port is dropped."""
    b = Bridged(lab)
    rules = [BandwidthRule(1, 101, "local", Direction.OUT, 5 * MBIT, 20 * MBIT)]
    b.shape(rules)
    assert lab.ping(b.guests[0], "10.1.0.6")
    lab.host.delete_link(b.net.ifb)
    b.shape(rules)
    assert lab.ping(b.guests[0], "10.1.0.6")
    assert lab.ping(b.guests[1], "10.1.0.5")


@pytest.mark.parametrize("kind", [NetworkType.NAT, NetworkType.ROUTED])
def test_maximum_holds_on_nat_and_routed_networks_both_ways(lab: Lab, kind: NetworkType) -> None:
    """No uplink needed: the instance's port is shaped whatever carries the traffic on."""
    from tests.system.net.lab import in_ns

    backend = HostBackend(lab.host)
    if kind is NetworkType.NAT:
        net = NetworkSpec(3, "priv", kind, (ipaddress.ip_network("192.168.9.0/24"),),
                          (ip("192.168.9.1"),))
        nic = NicSpec(101, 0, net, "02:c0:00:00:03:01", (ip("192.168.9.5"),))
        guest = lab.guest("n", nic.host_ifname, nic.mac, ["192.168.9.5/24"])
        host_address = "192.168.9.1"
    else:
        net = NetworkSpec(2, "pub", kind)
        nic = NicSpec(101, 0, net, "02:c0:00:00:02:01", (ip("198.51.100.50"),))
        guest = lab.guest("r", nic.host_ifname, nic.mac, ["198.51.100.50/32"],
                          [["169.254.0.1", "dev", "eth0"]])
        host_address = "169.254.0.1"
    backend.ensure_network(net)
    backend.plug(nic)
    if kind is NetworkType.ROUTED:
        in_ns(guest, "ip", "route", "add", "default", "via", "169.254.0.1")
    ceil = 20 * MBIT
    backend.apply_shaping(net, [BandwidthRule(1, 101, "world", Direction.OUT, 5 * MBIT, ceil),
                                BandwidthRule(2, 101, "world", Direction.IN, 5 * MBIT, ceil)],
                          [nic], list(CLASSES))
    amount = 3_000_000
    out = _rate(lab.transfer(guest, lab.host_ns, host_address, amount, port=5420))
    inbound = _rate(lab.transfer(lab.host_ns, guest, str(nic.addresses[0]), amount, port=5421))
    print(f"\n{kind.value}: instance -> host {out / MBIT:.1f}, host -> instance "
          f"{inbound / MBIT:.1f} Mbit/s")
    for rate in (out, inbound):
        assert 0.5 * ceil <= rate <= 1.3 * ceil
    # Without rules nothing stays: no IFB, no redirect on the port.
    backend.apply_shaping(net, [], [nic], list(CLASSES))
    assert not lab.host.exists(net.ifb) and not lab.host.exists(net.ifb_in)
    assert not [q for q in tc.qdiscs(lab.host, nic.host_ifname) if q["kind"] == "clsact"]


def test_two_instances_contending_each_get_their_guarantee(lab: Lab) -> None:
    link = 30 * MBIT
    b = Bridged(lab, link_rate=link)
    b.shape([BandwidthRule(1, 101, "world", Direction.OUT, 20 * MBIT, link),
             BandwidthRule(2, 102, "world", Direction.OUT, 5 * MBIT, link)])
    servers = [lab.server(b.world, 5301), lab.server(b.world, 5302)]
    senders = [lab.sender(b.guests[0], "203.0.113.1", 5301, "s4"),
               lab.sender(b.guests[1], "203.0.113.1", 5302, "s4")]
    for s in senders:
        lab.result(s)
    got = [lab.result(s) for s in servers]
    rates = [g["bytes"] * 8 / g["seconds"] for g in got]
    print(f"\nlink {link / MBIT} Mbit/s, guarantees 20/5: got {rates[0] / MBIT:.2f} / "
          f"{rates[1] / MBIT:.2f} Mbit/s")
    assert rates[0] >= 0.95 * 20 * MBIT
    assert rates[1] >= 0.95 * 5 * MBIT
    assert sum(rates) <= 1.1 * link
    # Changed live: the guarantees swap without rebuilding anything else.
    b.shape([BandwidthRule(1, 101, "world", Direction.OUT, 5 * MBIT, link),
             BandwidthRule(2, 102, "world", Direction.OUT, 20 * MBIT, link)])
    classes = tc.classes(lab.host, b.net.ifb)
    assert classes["1:11"] == (5 * MBIT, link)
    assert classes["1:12"] == (20 * MBIT, link)


def test_routed_network_reaches_the_world_through_proxy_arp(lab: Lab) -> None:
    backend = HostBackend(lab.host)
    world = lab.world("up0", ["198.51.100.1/24", "2001:db8:1::1/64"])
    lab.host.add_address("up0", "198.51.100.2/24")
    lab.host.add_address("up0", "2001:db8:1::2/64")
    net = NetworkSpec(2, "pub", NetworkType.ROUTED, uplink="up0")
    backend.ensure_network(net)
    nic = NicSpec(103, 0, net, "02:c0:00:00:02:01", (ip("198.51.100.50"), ip("2001:db8:1::50")))
    guest = lab.guest("r", nic.host_ifname, nic.mac, ["198.51.100.50/32", "2001:db8:1::50/128"])
    backend.plug(nic)
    from tests.system.net.lab import in_ns

    in_ns(guest, "ip", "route", "add", "169.254.0.1", "dev", "eth0")
    in_ns(guest, "ip", "route", "add", "default", "via", "169.254.0.1")
    in_ns(guest, "ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0")
    backend.apply_filters(FilterInput((nic,), CLASSES, backend.counters()))
    started = time.monotonic()
    assert lab.ping(world, "198.51.100.50")  # the world ARPs; the host answers by proxy
    assert time.monotonic() - started < 0.5  # proxy_delay=0: no 0.8 s wait on the first one
    assert lab.ping(guest, "198.51.100.1")
    deadline = time.monotonic() + 5  # IPv6 DAD on the fresh links
    while not lab.ping(world, "2001:db8:1::50") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lab.ping(world, "2001:db8:1::50")
    counted = backend.counters()["inet"][counter_name(103, "world", Direction.IN)]
    assert counted[0] >= 2
    # Unplug removes the host routes and the proxy entry, not leaving a stale path.
    backend.unplug(nic, delete_device=True)
    assert not lab.host.exists(nic.host_ifname)
    assert "198.51.100.50" not in " ".join(lab.host.routes("up0"))


def test_vlan_network_is_refused_naming_the_missing_kernel_feature(lab: Lab) -> None:
    if probe("vlan_8021q").available:
        pytest.skip("this kernel has 802.1Q VLAN: nothing to refuse")
    backend = HostBackend(lab.host)
    lab.host.add_veth("up0", "up0peer")
    net = NetworkSpec(3, "v", NetworkType.VLAN, uplink="up0", vlan=10)
    with pytest.raises(Unsupported, match=r"802\.1Q"):
        backend.ensure_network(net)
    assert not lab.host.exists("cbr3")


def test_vlan_network_carries_tagged_frames(lab: Lab) -> None:
    feature = probe("vlan_8021q")
    if not feature.available:
        pytest.skip(f"needs 802.1Q VLAN in the kernel: {feature.detail}")
    backend = HostBackend(lab.host)
    lab.host.add_veth("up0", "up0peer")
    net = NetworkSpec(3, "v", NetworkType.VLAN, uplink="up0", vlan=10)
    backend.ensure_network(net)
    assert lab.host.master_of("cvl3") == "cbr3"


def test_removing_a_network_leaves_nothing(lab: Lab) -> None:
    b = Bridged(lab)
    b.shape([BandwidthRule(1, 101, "world", Direction.OUT, 5 * MBIT, 10 * MBIT)])
    for nic in b.nics:
        b.backend.unplug(nic, delete_device=True)
    b.backend.remove_filters()
    b.backend.remove_network(b.net)
    names = {link["ifname"] for link in lab.host.links()}
    assert names == {"lo", "up0"}
    assert tc.qdiscs(lab.host, "up0")[0]["kind"] != "htb"
    assert not nft.table_exists(lab.host, "bridge", "corral")
