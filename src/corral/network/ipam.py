"""Address management per network: static addresses checked, free ones allocated (pure)."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable, Iterator

from corral.domain.errors import Conflict, InvalidInput
from corral.domain.network import IPAddress, IPNetwork, NetworkSpec, NetworkType

MAC_PREFIX = (0x02, 0xC0)  # locally administered, unicast; "C0" for Corral
_SCAN_LIMIT = 1 << 16


def _reserved(spec: NetworkSpec, subnet: IPNetwork) -> set[IPAddress]:
    """Addresses no NIC may have: the subnet's network/broadcast (IPv4) and the gateways."""
    reserved: set[IPAddress] = set(spec.gateways)
    if isinstance(subnet, ipaddress.IPv4Network) and subnet.prefixlen < 31:
        reserved |= {subnet.network_address, subnet.broadcast_address}
    if isinstance(subnet, ipaddress.IPv6Network) and subnet.prefixlen < 127:
        reserved.add(subnet.network_address)  # the subnet-router anycast address
    return reserved


def check_static(spec: NetworkSpec, address: IPAddress, used: Iterable[IPAddress]) -> None:
    """Refuse an address outside the network's subnets, reserved, or already assigned."""
    if address in set(used):
        raise Conflict(f"address {address} is already assigned on network '{spec.name}'")
    if spec.type is NetworkType.ROUTED and not spec.subnets:
        return  # routed networks may carry any public address the operator routes here
    subnet = next((s for s in spec.subnets if s.version == address.version and address in s),
                  None)
    if subnet is None:
        have = ", ".join(str(s) for s in spec.subnets) or "none"
        raise InvalidInput(
            f"address {address} is not in network '{spec.name}' (subnets: {have})"
        )
    if address in _reserved(spec, subnet):
        raise InvalidInput(
            f"address {address} is reserved on network '{spec.name}' "
            "(network, broadcast or gateway address)"
        )


def _candidates(spec: NetworkSpec, version: int) -> Iterator[tuple[IPNetwork, IPAddress]]:
    for start, end in spec.pools:
        if start.version != version:
            continue
        subnet = next((s for s in spec.subnets if start in s), None)
        if subnet is None:
            subnet = ipaddress.ip_network(f"{start}/{start.max_prefixlen}")
        for value in range(int(start), int(end) + 1):
            yield subnet, ipaddress.ip_address(value)
    if spec.pools:
        return
    for subnet in spec.subnets:
        if subnet.version != version:
            continue
        # IPv6: allocate from ::100 up (the low addresses are customarily routers/servers).
        offset = 1 if version == 4 else 0x100
        for index, address in enumerate(_hosts_from(subnet, offset)):
            if index >= _SCAN_LIMIT:
                break
            yield subnet, address


def _hosts_from(subnet: IPNetwork, offset: int) -> Iterator[IPAddress]:
    first = int(subnet.network_address) + offset
    last = int(subnet.broadcast_address)
    for value in range(first, last + 1):
        yield ipaddress.ip_address(value)


def allocate(spec: NetworkSpec, version: int, used: Iterable[IPAddress]) -> IPAddress:
    """The lowest free address of the given IP version in the network's pools or subnets."""
    taken = set(used)
    for subnet, address in _candidates(spec, version):
        if address in taken or address in _reserved(spec, subnet):
            continue
        return address
    raise Conflict(f"network '{spec.name}' has no free IPv{version} address left")


def generate_mac(used: Iterable[str]) -> str:
    """A random locally administered unicast MAC with Corral's prefix, not in ``used``."""
    taken = {m.lower() for m in used}
    for _ in range(1000):
        tail = secrets.token_bytes(4)
        mac = ":".join(f"{b:02x}" for b in (*MAC_PREFIX, *tail))
        if mac not in taken:
            return mac
    raise Conflict("could not find a free MAC address")


def normalise_mac(text: str) -> str:
    """'02-C0-00-00-00-01' -> '02:c0:00:00:00:01'; refuse multicast and malformed values."""
    cleaned = text.strip().lower().replace("-", ":")
    parts = cleaned.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise InvalidInput(f"MAC address '{text}' is not six hex bytes (aa:bb:cc:dd:ee:ff)")
    try:
        octets = [int(p, 16) for p in parts]
    except ValueError:
        raise InvalidInput(f"MAC address '{text}' is not six hex bytes") from None
    if octets[0] & 1:
        raise InvalidInput(f"MAC address '{text}' is a multicast address")
    if not any(octets):
        raise InvalidInput(f"MAC address '{text}' is all zeros")
    return cleaned
