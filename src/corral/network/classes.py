"""Traffic classes (named IP ranges) as disjoint intervals, most specific prefix first (pure).

Classes may overlap (``local=10.0.0.0/8`` inside ``world=0.0.0.0/0``): an address belongs to
the class of the longest prefix that contains it, as a router would choose. nftables interval
maps refuse overlapping elements, so the ranges are cut into disjoint intervals here.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from dataclasses import dataclass

from corral.domain.errors import InvalidInput
from corral.domain.names import validate_name
from corral.domain.network import IPNetwork, TrafficClass, parse_network

_OLD_CLASS_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


def validate_class_name(name: str) -> str:
    """Class names follow the rule of every other name (a DNS label, so '-' is allowed);
    names with '_' that the earlier rule accepted stay valid, so stored classes keep working."""
    if _OLD_CLASS_NAME.match(name):
        return name
    return validate_name(name, "traffic class")


def parse_class(text: str) -> TrafficClass:
    """'local=10.0.0.0/8,fd00::/8' -> TrafficClass('local', (...))."""
    if "=" not in text:
        raise InvalidInput(f"class '{text}' must look like NAME=PREFIX[,PREFIX...]")
    name, _, ranges = text.partition("=")
    prefixes = tuple(parse_network(r, "range") for r in ranges.split(",") if r.strip())
    if not prefixes:
        raise InvalidInput(f"class '{name}' has no IP range")
    return TrafficClass(validate_class_name(name.strip()), prefixes)


@dataclass(frozen=True)
class Interval:
    version: int
    first: int
    last: int
    traffic_class: str

    def render(self) -> str:
        make = ipaddress.IPv4Address if self.version == 4 else ipaddress.IPv6Address
        first, last = make(self.first), make(self.last)
        return str(first) if first == last else f"{first}-{last}"


def intervals(classes: list[TrafficClass], version: int) -> list[Interval]:
    """Disjoint, sorted intervals covering every class's ranges of this IP version.

    Each address goes to the class whose prefix containing it is longest (ties: the class
    defined first).
    """
    prefixes: list[tuple[IPNetwork, int, str]] = []
    for order, cls in enumerate(classes):
        for prefix in cls.prefixes:
            if prefix.version == version:
                prefixes.append((prefix, order, cls.name))
    if not prefixes:
        return []
    # Boundaries where the answer can change.
    points = sorted({int(p.network_address) for p, _, _ in prefixes}
                    | {int(p.broadcast_address) + 1 for p, _, _ in prefixes})
    result: list[Interval] = []
    for start, end in itertools.pairwise(points):
        best: tuple[int, int, str] | None = None
        for prefix, order, name in prefixes:
            if int(prefix.network_address) <= start <= int(prefix.broadcast_address):
                key = (-prefix.prefixlen, order, name)
                if best is None or key < best:
                    best = key
        if best is None:
            continue
        name = best[2]
        if result and result[-1].traffic_class == name and result[-1].last == start - 1:
            result[-1] = Interval(version, result[-1].first, end - 1, name)
        else:
            result.append(Interval(version, start, end - 1, name))
    return result


def classify(classes: list[TrafficClass], address: str) -> str | None:
    """Which class an address falls into (for tests and `corral netstat --explain`)."""
    ip = ipaddress.ip_address(address)
    for interval in intervals(classes, ip.version):
        if interval.first <= int(ip) <= interval.last:
            return interval.traffic_class
    return None
