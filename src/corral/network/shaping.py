"""tc HTB trees for bandwidth per instance per traffic class, rendered as ``tc -batch`` (pure).

Every path a class covers must pass a tree: instance to instance on one bridge, instance to
host, instance to the world, routed or NAT. The one place all of them share is the instance's
own host-side port (veth end or tap), so that is where traffic is caught, in both directions:
a ``clsact`` qdisc on each port redirects (``mirred``) what arrives from the instance to the
network's *out* IFB, and what leaves towards the instance to its *in* IFB. Each IFB carries
one HTB tree for the whole network, so the instances of a network contend in one tree and
their guarantees mean something; after the tree, the IFB hands each packet back to the port
it came from. (A tree on the bridge device or the uplink saw only traffic to the host or to
the world: frames between two ports of a bridge never pass either.)

Tree: ``1:`` root, ``1:1`` the link (``link_rate``), one leaf per (instance, class) rule with
``rate`` = guarantee and ``ceil`` = maximum, and ``1:ffff`` for everything unclassified;
beside the link, ``1:fffe`` for traffic between two instances of the network that the tree's
guest has no rule for (see ``_filters``). u32 filters send a packet to a leaf by (guest
address, remote address in one of the class's ranges); longer prefixes get lower (earlier)
priorities so the most specific class wins, as in accounting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from corral.domain.errors import InvalidInput
from corral.domain.network import (
    BandwidthRule,
    Direction,
    IPAddress,
    NetworkSpec,
    TrafficClass,
)

DEFAULT_MINOR = 0xFFFF
BETWEEN_MINOR = 0xFFFE
BETWEEN_RATE = 32 * 10**9  # traffic between two instances, not under the link: no real limit
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
    """The IFB whose egress carries the tree."""
    direction: Direction
    commands: tuple[str, ...]


def plans(
    network: NetworkSpec,
    rules: list[BandwidthRule],
    addresses: Mapping[int, tuple[IPAddress, ...]],
    classes: list[TrafficClass],
) -> list[Plan]:
    """The two trees of one network: what its instances send, what they receive."""
    return [
        Plan(ifb, direction,
             tuple(_tree(ifb, network.link_rate, direction, rules, addresses, classes)))
        for ifb, direction in ((network.ifb, Direction.OUT), (network.ifb_in, Direction.IN))
    ]


def port_commands(network: NetworkSpec, port: str) -> list[str]:
    """Catch everything through an instance's host-side ``port`` for the network's IFBs."""
    redirect = "protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev"
    return [
        f"qdisc add dev {port} clsact",
        f"filter add dev {port} ingress {redirect} {network.ifb}",  # from the instance
        f"filter add dev {port} egress {redirect} {network.ifb_in}",  # to the instance
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
        f"class add dev {dev} parent 1: classid 1:{BETWEEN_MINOR:x} htb "
        f"rate {BETWEEN_RATE}bit ceil {BETWEEN_RATE}bit quantum {_quantum(BETWEEN_RATE)}",
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


def _prio(version: int, prefixlen: int | None, tier: int) -> int:
    """Filter priority: longer class prefixes first; within one prefix length, an instance's
    rules (tier 0), then traffic between instances (1), then the classes it has no rule for
    (2); last (``prefixlen`` None), traffic between instances in no class at all."""
    base, maxlen = (100, 32) if version == 4 else (300, 128)
    if prefixlen is None:
        return base + 3 * maxlen + 3
    return base + 3 * (maxlen - prefixlen) + tier


def _class_prefixlen(classes: list[TrafficClass], address: IPAddress) -> int | None:
    """Length of the most specific class prefix holding ``address`` (the one that decides)."""
    lengths = [p.prefixlen for c in classes for p in c.prefixes
               if p.version == address.version and address in p]
    return max(lengths, default=None)


def _filters(
    dev: str, direction: Direction, rules: list[BandwidthRule],
    addresses: Mapping[int, tuple[IPAddress, ...]], classes: list[TrafficClass],
) -> list[str]:
    """u32 filters by (guest address, remote address).

    Traffic between two instances of the network passes two trees: the sender's *out* and
    the receiver's *in*. Each tree holds it only for its own guest's rule; otherwise it goes
    to ``BETWEEN_MINOR``, outside the link, so that one end's unlimited traffic never queues
    behind the link in front of the other end's guarantee (and it never crosses the shared
    link anyway).
    """
    by_instance: dict[int, dict[str, BandwidthRule]] = {}
    for each in rules:
        by_instance.setdefault(each.instance_id, {})[each.traffic_class] = each
    guest_field, remote_field = ("src", "dst") if direction is Direction.OUT else ("dst", "src")
    cmds: list[str] = []

    def add(address: IPAddress, prio: int, matches: str, flow: str) -> None:
        proto = "ip" if address.version == 4 else "ipv6"
        cmds.append(f"filter add dev {dev} parent 1: protocol {proto} prio {prio} u32 "
                    f"{matches} flowid {flow}")

    def match(field: str, net: object, address: IPAddress) -> str:
        return f"match {'ip' if address.version == 4 else 'ip6'} {field} {net}"

    for instance_id, wanted in sorted(by_instance.items()):
        for address in addresses.get(instance_id, ()):
            guest = match(guest_field, f"{address}/{address.max_prefixlen}", address)
            for cls in classes:
                rule = wanted.get(cls.name)
                flow = f"1:{leaf_minor(rule):x}" if rule else f"1:{DEFAULT_MINOR:x}"
                for prefix in cls.prefixes:
                    if prefix.version != address.version:
                        continue
                    add(address, _prio(address.version, prefix.prefixlen, 0 if rule else 2),
                        f"{guest} {match(remote_field, prefix, address)}", flow)
    for instance_id in sorted(addresses):
        for address in addresses[instance_id]:
            prio = _prio(address.version, _class_prefixlen(classes, address), 1)
            remote = match(remote_field, f"{address}/{address.max_prefixlen}", address)
            add(address, prio, remote, f"1:{BETWEEN_MINOR:x}")
    return cmds
