"""tc HTB trees for bandwidth per instance per traffic class, rendered as ``tc -batch`` (pure).

Guarantees only mean something where instances share a link, so the tree sits on the network's
shared link (``NetworkSpec.shaping_device``): its uplink when it has one, else its bridge.
Egress of that device is shaped directly; its ingress is redirected to an IFB device
(``mirred``) and shaped on the IFB's egress. Which of the two carries an instance's *outbound*
traffic depends on where the device sits: frames leave through an uplink towards the world,
but leave a bridge device towards the guests.

Tree: ``1:`` root, ``1:1`` the link (``link_rate``), one leaf per (instance, class) rule with
``rate`` = guarantee and ``ceil`` = maximum, and ``1:ffff`` for everything unclassified. u32
filters send a packet to a leaf by (guest address, remote address in one of the class's
ranges); longer prefixes get lower (earlier) priorities so the most specific class wins, as in
accounting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from corral.domain.errors import InvalidInput
from corral.network.model import (
    BandwidthRule,
    Direction,
    IPAddress,
    NetworkSpec,
    TrafficClass,
)

DEFAULT_MINOR = 0xFFFF
LINK_MINOR = 1
MIN_RATE = 8000
MAX_LEAVES = 0xFF00


def leaf_minor(rule: BandwidthRule) -> int:
    """A stable class minor per rule (its id), so a re-render keeps class ids."""
    minor = 0x10 + rule.id
    if minor >= MAX_LEAVES:
        raise InvalidInput(f"bandwidth rule id {rule.id} is too large for a tc class id")
    return minor


def _quantum(rate: int) -> int:
    """Bytes per round: rate/8/10 (HTB's r2q) kept within sane limits, at least one MTU."""
    return max(1514, min(200000, rate // 80))


@dataclass(frozen=True)
class Plan:
    device: str
    """Where the tree goes (the shaping device itself, or its IFB)."""
    direction: Direction
    commands: tuple[str, ...]


def outbound_on_egress(network: NetworkSpec) -> bool:
    """Whether an instance's outbound traffic leaves through the shaping device's egress."""
    return network.uplink is not None


def plans(
    network: NetworkSpec,
    rules: list[BandwidthRule],
    addresses: Mapping[int, tuple[IPAddress, ...]],
    classes: list[TrafficClass],
) -> list[Plan]:
    """The two trees (device egress, IFB egress) for one network."""
    device = network.shaping_device
    if device is None:
        raise InvalidInput(f"network '{network.name}' has no shared link to shape")
    egress_dir = Direction.OUT if outbound_on_egress(network) else Direction.IN
    ingress_dir = Direction.IN if egress_dir is Direction.OUT else Direction.OUT
    return [
        Plan(device, egress_dir,
             tuple(_tree(device, network.link_rate, egress_dir, rules, addresses, classes))),
        Plan(network.ifb, ingress_dir,
             tuple(_tree(network.ifb, network.link_rate, ingress_dir, rules, addresses,
                         classes))),
    ]


def _tree(
    dev: str, link: int, direction: Direction, rules: list[BandwidthRule],
    addresses: Mapping[int, tuple[IPAddress, ...]], classes: list[TrafficClass],
) -> list[str]:
    mine = sorted((r for r in rules if r.direction is direction), key=lambda r: r.id)
    guaranteed = sum(r.rate for r in mine)
    default_rate = max(MIN_RATE, link - guaranteed)
    cmds = [
        f"qdisc add dev {dev} root handle 1: htb default {DEFAULT_MINOR:x}",
        f"class add dev {dev} parent 1: classid 1:{LINK_MINOR:x} htb rate {link}bit "
        f"ceil {link}bit quantum {_quantum(link)}",
        f"class add dev {dev} parent 1:{LINK_MINOR:x} classid 1:{DEFAULT_MINOR:x} htb "
        f"rate {default_rate}bit ceil {link}bit quantum {_quantum(default_rate)}",
    ]
    for rule in mine:
        ceil = min(rule.ceil, link)
        rate = min(rule.rate, ceil)
        cmds.append(
            f"class add dev {dev} parent 1:{LINK_MINOR:x} classid 1:{leaf_minor(rule):x} htb "
            f"rate {rate}bit ceil {ceil}bit quantum {_quantum(rate)}"
        )
    cmds += _filters(dev, direction, mine, addresses, classes)
    return cmds


def _filters(
    dev: str, direction: Direction, rules: list[BandwidthRule],
    addresses: Mapping[int, tuple[IPAddress, ...]], classes: list[TrafficClass],
) -> list[str]:
    by_instance: dict[int, dict[str, BandwidthRule]] = {}
    for each in rules:
        by_instance.setdefault(each.instance_id, {})[each.traffic_class] = each
    guest_field, remote_field = ("src", "dst") if direction is Direction.OUT else ("dst", "src")
    cmds: list[str] = []
    for instance_id, wanted in sorted(by_instance.items()):
        for address in addresses.get(instance_id, ()):
            proto, match, base = ("ip", "ip", 100) if address.version == 4 else ("ipv6", "ip6",
                                                                                  300)
            for cls in classes:
                rule = wanted.get(cls.name)
                flow = f"1:{leaf_minor(rule):x}" if rule else f"1:{DEFAULT_MINOR:x}"
                for prefix in cls.prefixes:
                    if prefix.version != address.version:
                        continue
                    prio = base + (prefix.max_prefixlen - prefix.prefixlen)
                    cmds.append(
                        f"filter add dev {dev} parent 1: protocol {proto} prio {prio} u32 "
                        f"match {match} {guest_field} {address}/{address.max_prefixlen} "
                        f"match {match} {remote_field} {prefix} flowid {flow}"
                    )
    return cmds
