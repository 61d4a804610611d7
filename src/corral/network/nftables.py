"""The nftables rulesets of a host, rendered as text for one atomic ``nft -f`` (pure).

Two tables, both owned entirely by Corral and replaced whole in one transaction:

* ``bridge corral`` — NICs whose host device is a bridge port (bridged, nat, vlan networks);
* ``inet corral``   — NICs on routed networks (plain L3 host devices), and NAT masquerading.

Each holds the same pieces: anti-spoofing at prerouting priority -300 (a frame whose source MAC
or IP is not assigned to the NIC it came in on is dropped) and accounting: per instance, per
traffic class, per direction, a named counter chosen by an interval map lookup on the remote
address. Counter values are carried over when the tables are replaced (``counter { packets
bytes }`` initialisers), so re-rendering never loses or resets traffic already counted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from corral.domain.network import (
    Direction,
    NetworkSpec,
    NetworkType,
    NicSpec,
    TrafficClass,
)
from corral.network.classes import intervals

TABLE = "corral"
"""The tables' name for the daemon on the default state directory (/var/lib/corral)."""
DEFAULT_STATE_DIR = "/var/lib/corral"


def table_for(state_dir: str) -> str:
    """The tables' name of the corrald whose state directory is ``state_dir``.

    Each apply replaces its tables whole, so two corrald in one network namespace must not
    share a name: the default daemon keeps ``corral`` (what operators, the package's purge
    and the docs name); any other (a test's, a second instance's) gets ``corral_`` and 8 hex
    digits of its state directory's path."""
    if state_dir.rstrip("/") == DEFAULT_STATE_DIR:
        return TABLE
    return f"{TABLE}_{hashlib.sha256(state_dir.encode()).hexdigest()[:8]}"
BRIDGE_FAMILY = "bridge"
INET_FAMILY = "inet"
FAMILIES = (BRIDGE_FAMILY, INET_FAMILY)

CounterValues = dict[str, tuple[int, int]]
"""Counter name -> (packets, bytes)."""


def counter_name(instance_id: int, traffic_class: str, direction: Direction) -> str:
    return f"i{instance_id}_{traffic_class}_{direction.value}"


def parse_counter_name(name: str) -> tuple[int, str, Direction] | None:
    """Inverse of ``counter_name``; None for names that are not Corral's."""
    if not name.startswith("i"):
        return None
    head, _, rest = name[1:].partition("_")
    cls, _, direction = rest.rpartition("_")
    if not head.isdigit() or not cls or direction not in ("in", "out"):
        return None
    return int(head), cls, Direction(direction)


def family_of(network: NetworkSpec) -> str:
    return INET_FAMILY if network.type is NetworkType.ROUTED else BRIDGE_FAMILY


@dataclass(frozen=True)
class FilterInput:
    nics: tuple[NicSpec, ...]
    classes: tuple[TrafficClass, ...] = ()
    counters: dict[str, CounterValues] = field(default_factory=dict)
    """Per family, the values each counter starts from (the kernel's current ones)."""
    nat_networks: tuple[NetworkSpec, ...] = ()


def _q(name: str) -> str:
    return f'"{name}"'


def _elements(items: Iterable[str]) -> str:
    listed = list(items)
    return f" elements = {{ {', '.join(listed)} }}" if listed else ""


def _sets(nics: list[NicSpec]) -> list[str]:
    guarded = [n for n in nics if n.antispoof]
    mac = [f"{_q(n.host_ifname)} . {n.mac}" for n in guarded]
    ip4 = [f"{_q(n.host_ifname)} . {a}" for n in guarded for a in n.ipv4]
    ip6 = [f"{_q(n.host_ifname)} . {a}" for n in guarded for a in n.ipv6]
    return [
        f"\tset guarded {{ type ifname;{_elements(_q(n.host_ifname) for n in guarded)} }}",
        f"\tset mac_ok {{ type ifname . ether_addr;{_elements(mac)} }}",
        f"\tset ip4_ok {{ type ifname . ipv4_addr;{_elements(ip4)} }}",
        f"\tset ip6_ok {{ type ifname . ipv6_addr;{_elements(ip6)} }}",
    ]


def _antispoof_chain(family: str) -> list[str]:
    lines = ["\tchain antispoof {", "\t\tiifname . ether saddr != @mac_ok drop"]
    if family == BRIDGE_FAMILY:
        lines += [
            "\t\tether type arp iifname . arp saddr ether != @mac_ok drop",
            "\t\tether type arp arp saddr ip 0.0.0.0 return",  # duplicate address detection
            "\t\tether type arp iifname . arp saddr ip != @ip4_ok drop",
            "\t\tether type != { ip, ip6, arp } drop",  # no VLAN tags, no other protocols
        ]
    lines += [
        "\t\tip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 return",
        "\t\tip saddr != 0.0.0.0 iifname . ip saddr != @ip4_ok drop",
        "\t\tip saddr 0.0.0.0 drop",
        "\t\ticmpv6 type { nd-router-advert, nd-redirect } drop",  # guests are not routers
        "\t\tip6 saddr :: icmpv6 type { nd-neighbor-solicit, mld2-listener-report } return",
        "\t\tip6 saddr fe80::/10 return",
        "\t\tiifname . ip6 saddr != @ip6_ok drop",
        "\t}",
    ]
    return lines


def _accounting(
    nics: list[NicSpec], classes: list[TrafficClass], start: CounterValues
) -> tuple[list[str], list[str], list[str]]:
    """(declarations, prerouting dispatch lines, postrouting dispatch lines)."""
    by_instance: dict[int, list[NicSpec]] = {}
    for nic in nics:
        by_instance.setdefault(nic.instance_id, []).append(nic)
    decls: list[str] = []
    out_dispatch: list[str] = []
    in_dispatch: list[str] = []
    if not classes:
        return decls, [], []
    for instance_id in sorted(by_instance):
        for cls in classes:
            for direction in Direction:
                name = counter_name(instance_id, cls.name, direction)
                packets, octets = start.get(name, (0, 0))
                decls.append(f"\tcounter {name} {{ packets {packets} bytes {octets} }}")
        for direction, remote in ((Direction.OUT, "daddr"), (Direction.IN, "saddr")):
            chain = f"acct_{direction.value}_{instance_id}"
            body = []
            for version, proto, addr_type in ((4, "ip", "ipv4_addr"), (6, "ip6", "ipv6_addr")):
                ranges = intervals(classes, version)
                if not ranges:
                    continue
                mapname = f"i{instance_id}_{direction.value}{version}"
                elements = [
                    f"{r.render()} : {_q(counter_name(instance_id, r.traffic_class, direction))}"
                    for r in ranges
                ]
                decls.append(
                    f"\tmap {mapname} {{ type {addr_type} : counter; flags interval;"
                    f"{_elements(elements)} }}"
                )
                body.append(f"\t\tcounter name {proto} {remote} map @{mapname}")
            decls += [f"\tchain {chain} {{", *body, "\t}"]
            targets = [f"{_q(n.host_ifname)} : jump {chain}" for n in by_instance[instance_id]]
            (out_dispatch if direction is Direction.OUT else in_dispatch).extend(targets)
    return decls, out_dispatch, in_dispatch


def render_table(
    family: str, nics: list[NicSpec], classes: list[TrafficClass], start: CounterValues,
    nat_networks: list[NetworkSpec] | None = None, table: str = TABLE,
) -> list[str]:
    decls, out_dispatch, in_dispatch = _accounting(nics, classes, start)
    lines = [f"table {family} {table} {{", *_sets(nics), *decls, *_antispoof_chain(family)]
    lines += [
        "\tchain prerouting {",
        "\t\ttype filter hook prerouting priority -300; policy accept;",
        "\t\tiifname @guarded jump antispoof",
    ]
    if out_dispatch:
        lines.append(f"\t\tiifname vmap {{ {', '.join(out_dispatch)} }}")
    lines += ["\t}", "\tchain postrouting {",
              "\t\ttype filter hook postrouting priority 0; policy accept;"]
    if in_dispatch:
        lines.append(f"\t\toifname vmap {{ {', '.join(in_dispatch)} }}")
    lines.append("\t}")
    if family == INET_FAMILY:
        lines += ["\tchain nat_postrouting {",
                  "\t\ttype nat hook postrouting priority srcnat; policy accept;"]
        for net in nat_networks or []:
            for subnet in net.subnets:
                proto = "ip" if subnet.version == 4 else "ip6"
                lines.append(
                    f"\t\t{proto} saddr {subnet} oifname != {_q(net.bridge or '')} masquerade"
                )
        lines.append("\t}")
    lines.append("}")
    return lines


def render(data: FilterInput, table: str = TABLE) -> str:
    """The whole ``nft -f`` script: both tables (named ``table``) replaced atomically."""
    classes = list(data.classes)
    lines: list[str] = []
    for family in FAMILIES:
        nics = [n for n in data.nics if family_of(n.network) == family]
        # 'add table' makes the 'delete' valid when the table does not exist yet.
        lines += [f"add table {family} {table}", f"delete table {family} {table}"]
        lines += render_table(
            family, nics, classes, data.counters.get(family, {}),
            list(data.nat_networks) if family == INET_FAMILY else None, table,
        )
    return "\n".join(lines) + "\n"


def render_removal(table: str = TABLE) -> str:
    lines: list[str] = []
    for family in FAMILIES:
        lines += [f"add table {family} {table}", f"delete table {family} {table}"]
    return "\n".join(lines) + "\n"
