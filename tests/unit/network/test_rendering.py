from __future__ import annotations

import ipaddress
import itertools

from corral.domain.network import (
    BandwidthRule,
    Direction,
    NetworkSpec,
    NetworkType,
    NicSpec,
)
from corral.network.classes import classify, intervals, parse_class
from corral.network.nftables import FilterInput, counter_name, parse_counter_name, render
from corral.network.shaping import plans, port_commands

CLASSES = [parse_class("local=10.0.0.0/8,fd00::/8"), parse_class("world=0.0.0.0/0,::/0"),
           parse_class("dc=10.20.0.0/16")]
BRIDGED = NetworkSpec(1, "lan", NetworkType.BRIDGED, (ipaddress.ip_network("10.1.0.0/24"),),
                      uplink="up0")
ROUTED = NetworkSpec(2, "pub", NetworkType.ROUTED, uplink="up0")


def nic(instance: int, network: NetworkSpec, *addresses: str, guard: bool = True) -> NicSpec:
    return NicSpec(instance, 0, network, f"02:c0:00:00:00:{instance % 256:02x}",
                   tuple(ipaddress.ip_address(a) for a in addresses), antispoof=guard)


def test_most_specific_class_wins_and_intervals_are_disjoint() -> None:
    assert classify(CLASSES, "10.20.1.1") == "dc"
    assert classify(CLASSES, "10.1.1.1") == "local"
    assert classify(CLASSES, "8.8.8.8") == "world"
    assert classify(CLASSES, "fd00::1") == "local"
    assert classify(CLASSES, "2001:db8::1") == "world"
    four = intervals(CLASSES, 4)
    assert [i.render() for i in four] == [
        "0.0.0.0-9.255.255.255", "10.0.0.0-10.19.255.255", "10.20.0.0-10.20.255.255",
        "10.21.0.0-10.255.255.255", "11.0.0.0-255.255.255.255",
    ]
    assert all(a.last < b.first for a, b in itertools.pairwise(four))
    assert classify([parse_class("local=10.0.0.0/8")], "8.8.8.8") is None


def test_counter_names_round_trip() -> None:
    name = counter_name(101, "world", Direction.IN)
    assert parse_counter_name(name) == (101, "world", Direction.IN)
    assert parse_counter_name("something_else") is None


def test_ruleset_puts_each_nic_in_its_family_and_keeps_counter_values() -> None:
    text = render(FilterInput(
        (nic(101, BRIDGED, "10.1.0.5"), nic(102, ROUTED, "198.51.100.7"),
         nic(103, BRIDGED, "10.1.0.9", guard=False)),
        tuple(CLASSES), {"bridge": {"i101_world_out": (7, 700)}},
    ))
    bridge, inet = text.split("table inet corral {")
    assert '"c101n0" . 02:c0:00:00:00:65' in bridge and '"c101n0" . 10.1.0.5' in bridge
    assert "c102n0" not in bridge and '"c102n0" . 198.51.100.7' in inet
    assert "counter i101_world_out { packets 7 bytes 700 }" in bridge
    assert "counter i102_world_out { packets 0 bytes 0 }" in inet
    # An unguarded NIC is accounted but not in the anti-spoofing sets.
    assert '"c103n0" : jump acct_out_103' in bridge
    assert '"c103n0" . ' not in bridge
    # Replaced atomically: every table is deleted and rebuilt in the same script.
    assert text.count("delete table") == 2
    assert "arp saddr ip != @ip4_ok drop" in bridge and "arp" not in inet


def test_empty_ruleset_has_no_empty_maps() -> None:
    text = render(FilterInput((), tuple(CLASSES)))
    assert "vmap" not in text and "elements = { }" not in text


def test_htb_trees_sit_on_the_networks_two_ifbs_one_per_direction() -> None:
    rules = [BandwidthRule(1, 101, "world", Direction.OUT, 10**7, 3 * 10**7),
             BandwidthRule(2, 101, "world", Direction.IN, 10**6, 2 * 10**6)]
    addresses = {101: (ipaddress.ip_address("10.1.0.5"), ipaddress.ip_address("fd00:1::5"))}
    egress, ingress = plans(BRIDGED, rules, addresses, CLASSES)
    assert (egress.device, egress.direction) == ("cifb1", Direction.OUT)
    assert (ingress.device, ingress.direction) == ("cifb1i", Direction.IN)
    out = "\n".join(egress.commands)
    assert "classid 1:11 htb rate 10000000bit ceil 30000000bit" in out
    assert "classid 1:12" not in out
    # World traffic goes to the leaf, local traffic to the default class (no rule for it).
    assert "match ip src 10.1.0.5/32 match ip dst 0.0.0.0/0 flowid 1:11" in out
    assert "match ip src 10.1.0.5/32 match ip dst 10.0.0.0/8 flowid 1:ffff" in out
    assert "protocol ipv6 prio 684 u32 match ip6 src fd00:1::5/128 match ip6 dst ::/0" in out
    # Longer prefixes are tried first.
    prio = {line.split("match ip dst ")[1].split()[0]: int(line.split(" prio ")[1].split()[0])
            for line in egress.commands if "match ip dst" in line}
    assert prio["10.20.0.0/16"] < prio["10.0.0.0/8"] < prio["0.0.0.0/0"]
    inbound = "\n".join(ingress.commands)
    assert "match ip dst 10.1.0.5/32 match ip src 0.0.0.0/0 flowid 1:12" in inbound


def _prio_of(commands: tuple[str, ...], text: str) -> int:
    line = next(c for c in commands if text in c)
    return int(line.split(" prio ")[1].split()[0])


def test_traffic_between_instances_is_held_only_by_its_own_ends_rules() -> None:
    """101 has rules (world out; local in), 102 none: 101 -> 102 passes 101's *out* tree
    outside the link (no local rule out), 102 -> 101 is held by 101's local rule *in*."""
    rules = [BandwidthRule(1, 101, "world", Direction.OUT, 10**7, 3 * 10**7),
             BandwidthRule(2, 101, "local", Direction.IN, 10**6, 2 * 10**6)]
    addresses = {101: (ipaddress.ip_address("10.1.0.5"),),
                 102: (ipaddress.ip_address("10.1.0.6"),)}
    out, inbound = plans(BRIDGED, rules, addresses, CLASSES)
    assert any("classid 1:fffe htb rate 32000000000bit" in c and "parent 1: " in c
               for c in out.commands)
    between = _prio_of(out.commands, "match ip dst 10.1.0.6/32 flowid 1:fffe")
    # Before 101's "no rule for local" (default) and its world rule; after a local rule.
    assert between < _prio_of(out.commands, "src 10.1.0.5/32 match ip dst 10.0.0.0/8 flowid 1:ffff")
    assert between < _prio_of(out.commands, "src 10.1.0.5/32 match ip dst 0.0.0.0/0 flowid 1:11")
    local_rule = _prio_of(inbound.commands, "dst 10.1.0.5/32 match ip src 10.0.0.0/8 flowid 1:12")
    assert local_rule < _prio_of(inbound.commands, "match ip src 10.1.0.6/32 flowid 1:fffe")


def test_every_port_is_caught_both_ways_whatever_the_network_type() -> None:
    """Bridged, NAT or routed, with or without an uplink: the port redirects what comes from
    the instance to the *out* IFB and what goes to it to the *in* IFB."""
    for net in (BRIDGED, NetworkSpec(3, "priv", NetworkType.NAT,
                                     (ipaddress.ip_network("192.168.9.0/24"),)),
                NetworkSpec(4, "pub", NetworkType.ROUTED)):
        commands = port_commands(net, "c101n0")
        assert commands[0] == "qdisc add dev c101n0 clsact"
        assert commands[1].startswith("filter add dev c101n0 ingress ")
        assert commands[1].endswith(f"mirred egress redirect dev cifb{net.id}")
        assert commands[2].startswith("filter add dev c101n0 egress ")
        assert commands[2].endswith(f"mirred egress redirect dev cifb{net.id}i")


def test_each_daemon_has_its_own_tables() -> None:
    """Two corrald in one network namespace never replace each other's tables: the default
    daemon keeps ``corral``; another state directory gets a name of its own, the same at
    every start."""
    from corral.network.nftables import render_removal, table_for

    assert table_for("/var/lib/corral") == table_for("/var/lib/corral/") == "corral"
    other = table_for("/var/tmp/corral-test-1/state")
    assert other.startswith("corral_") and other == table_for("/var/tmp/corral-test-1/state")
    assert other != table_for("/var/tmp/corral-test-2/state")
    text = render(FilterInput(()), other)
    assert f"table bridge {other} {{" in text and f"table inet {other} {{" in text
    assert " corral " not in text.replace(other, "X")
    assert render_removal(other).split() == [
        "add", "table", "bridge", other, "delete", "table", "bridge", other,
        "add", "table", "inet", other, "delete", "table", "inet", other]
