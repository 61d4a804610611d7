"""What a network, a NIC, a traffic class and a bandwidth rule are (pure: no I/O; the
network/ package realises them on the host)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from enum import StrEnum

from corral.domain.errors import InvalidInput

MAX_NICS = 16
IFNAME_MAX = 15

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class NetworkType(StrEnum):
    BRIDGED = "bridged"  # a Linux bridge, optionally with an uplink enslaved
    ROUTED = "routed"  # no bridge: host routes + proxy ARP / proxy NDP on the uplink
    VLAN = "vlan"  # a bridge on an 802.1Q sub-interface of the uplink
    NAT = "nat"  # a private bridge; the host is the gateway and masquerades

    @classmethod
    def parse(cls, value: str) -> NetworkType:
        try:
            return cls(value.lower())
        except ValueError:
            known = ", ".join(t.value for t in cls)
            raise InvalidInput(f"network type '{value}' is not one of: {known}") from None


class Direction(StrEnum):
    IN = "in"  # towards the instance
    OUT = "out"  # from the instance


_UNITS = {"": None, "bit": 1, "k": 1000, "kbit": 1000, "m": 10**6, "mbit": 10**6,
          "g": 10**9, "gbit": 10**9, "t": 10**12, "tbit": 10**12}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_rate(text: str, what: str = "rate") -> int:
    """Bits per second from '10mbit', '10M', '1g', '500kbit' (decimal units, bits)."""
    match = _RATE.match(str(text))
    if not match:
        raise InvalidInput(f"{what} '{text}' is not a rate; write e.g. 100mbit or 1gbit")
    number, unit = match.groups()
    factor = _UNITS.get(unit.lower(), -1)
    if factor is None:
        raise InvalidInput(f"{what} '{text}' has no unit; write e.g. {text}mbit")
    if factor == -1:
        raise InvalidInput(f"{what} '{text}' has an unknown unit '{unit}'; use kbit, mbit, gbit")
    value = int(float(number) * factor)
    if value < 8000:
        raise InvalidInput(f"{what} '{text}' is below the minimum of 8kbit")
    return value


def format_rate(bits: int) -> str:
    for unit, factor in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 1000)):
        if bits >= factor:
            text = f"{bits / factor:.2f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{bits}bit"


def parse_network(text: str, what: str = "subnet") -> IPNetwork:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise InvalidInput(f"{what} '{text}' is not an IPv4 or IPv6 network") from None


def parse_address(text: str, what: str = "address") -> IPAddress:
    try:
        return ipaddress.ip_address(text.strip().split("/")[0])
    except ValueError:
        raise InvalidInput(f"{what} '{text}' is not an IPv4 or IPv6 address") from None


def validate_ifname(name: str, what: str = "interface") -> str:
    if not name or len(name) > IFNAME_MAX or "/" in name or any(c.isspace() for c in name):
        raise InvalidInput(
            f"{what} '{name}' is not a Linux interface name (1-15 characters, no '/' or spaces)"
        )
    return name


@dataclass(frozen=True)
class NetworkSpec:
    id: int
    name: str
    type: NetworkType
    subnets: tuple[IPNetwork, ...] = ()
    gateways: tuple[IPAddress, ...] = ()
    uplink: str | None = None
    vlan: int | None = None
    link_rate: int = 10**9  # bits/s of the shared link: the root of the HTB tree
    pools: tuple[tuple[IPAddress, IPAddress], ...] = ()  # allocation ranges; empty: subnets

    @property
    def bridge(self) -> str | None:
        """The bridge device (None for routed networks)."""
        return None if self.type is NetworkType.ROUTED else bridge_name(self.id)

    @property
    def shaping_device(self) -> str | None:
        """The shared link that carried the HTB trees before they moved to the IFBs (trees
        left there by an earlier Corral are removed from it)."""
        if self.uplink is not None:
            return self.uplink if self.type is not NetworkType.VLAN else vlan_device(self)
        return self.bridge

    @property
    def ifb(self) -> str:
        """The IFB whose egress shapes what the network's instances send (``out``)."""
        return f"cifb{self.id}"

    @property
    def ifb_in(self) -> str:
        """The IFB whose egress shapes what the network's instances receive (``in``)."""
        return f"cifb{self.id}i"


def bridge_name(network_id: int) -> str:
    return f"cbr{network_id}"


def vlan_device(spec: NetworkSpec) -> str:
    return f"cvl{spec.id}"


def nic_ifname(instance_id: int, index: int) -> str:
    """The host-side device of a NIC (veth end or tap): c<instance id>n<index>."""
    return f"c{instance_id}n{index}"


@dataclass(frozen=True)
class NicSpec:
    """One NIC of an instance, as drivers and the realiser see it."""

    instance_id: int
    index: int
    network: NetworkSpec
    mac: str
    addresses: tuple[IPAddress, ...] = ()
    antispoof: bool = True

    @property
    def host_ifname(self) -> str:
        return nic_ifname(self.instance_id, self.index)

    @property
    def guest_ifname(self) -> str:
        return f"eth{self.index}"

    @property
    def ipv4(self) -> tuple[ipaddress.IPv4Address, ...]:
        return tuple(a for a in self.addresses if isinstance(a, ipaddress.IPv4Address))

    @property
    def ipv6(self) -> tuple[ipaddress.IPv6Address, ...]:
        return tuple(a for a in self.addresses if isinstance(a, ipaddress.IPv6Address))

    def prefix_of(self, address: IPAddress) -> int:
        """The prefix length the guest configures: its subnet's, or host-only when routed."""
        if self.network.type is NetworkType.ROUTED:
            return address.max_prefixlen
        for subnet in self.network.subnets:
            if address.version == subnet.version and address in subnet:
                return subnet.prefixlen
        return address.max_prefixlen


@dataclass(frozen=True)
class TrafficClass:
    """A named set of IP ranges ('local' = 10.0.0.0/8), counted and shaped per instance."""

    name: str
    prefixes: tuple[IPNetwork, ...]
    id: int = 0


@dataclass(frozen=True)
class BandwidthRule:
    """Per instance, per class, per direction: a guarantee (HTB rate) and a maximum (ceil)."""

    id: int
    instance_id: int
    traffic_class: str
    direction: Direction
    rate: int
    ceil: int

    def __post_init__(self) -> None:
        if self.ceil < self.rate:
            raise InvalidInput(
                f"maximum {format_rate(self.ceil)} is below the guarantee {format_rate(self.rate)}"
            )


@dataclass(frozen=True)
class InstanceNics:
    """All NICs of one instance plus what the realiser needs to know about it."""

    instance_id: int
    name: str
    nics: tuple[NicSpec, ...] = field(default_factory=tuple)
