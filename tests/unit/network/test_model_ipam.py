from __future__ import annotations

import ipaddress

import pytest

from corral.domain.errors import Conflict, InvalidInput
from corral.domain.network import (
    BandwidthRule,
    Direction,
    NetworkSpec,
    NetworkType,
    NicSpec,
    format_rate,
    nic_ifname,
    parse_rate,
)
from corral.network.ipam import allocate, check_static, generate_mac, normalise_mac


def net(*subnets: str, gateways: tuple[str, ...] = (), type_: NetworkType = NetworkType.BRIDGED,
        pools: tuple[tuple[str, str], ...] = ()) -> NetworkSpec:
    return NetworkSpec(
        7, "lan", type_, tuple(ipaddress.ip_network(s) for s in subnets),
        tuple(ipaddress.ip_address(g) for g in gateways),
        pools=tuple((ipaddress.ip_address(a), ipaddress.ip_address(b)) for a, b in pools),
    )


def test_rates_parse_in_bits_and_need_a_unit() -> None:
    assert parse_rate("10mbit") == 10_000_000
    assert parse_rate("1.5G") == 1_500_000_000
    assert parse_rate("500kbit") == 500_000
    assert format_rate(30_000_000) == "30mbit"
    for bad in ("10", "fast", "10mb/s", "1bit"):
        with pytest.raises(InvalidInput):
            parse_rate(bad)


def test_ceil_below_rate_is_refused() -> None:
    with pytest.raises(InvalidInput, match="below the guarantee"):
        BandwidthRule(1, 101, "world", Direction.OUT, 20_000_000, 10_000_000)


def test_allocation_skips_network_gateway_and_used_addresses() -> None:
    spec = net("10.0.0.0/29", gateways=("10.0.0.1",))
    used = [ipaddress.ip_address("10.0.0.2")]
    assert str(allocate(spec, 4, used)) == "10.0.0.3"
    taken = [ipaddress.ip_address(f"10.0.0.{i}") for i in range(2, 7)]
    with pytest.raises(Conflict, match="no free IPv4"):
        allocate(spec, 4, taken)  # .7 is the broadcast address


def test_ipv6_allocation_starts_above_the_low_addresses_and_pools_win() -> None:
    assert str(allocate(net("fd00:1::/64"), 6, [])) == "fd00:1::100"
    pooled = net("10.0.0.0/24", pools=(("10.0.0.50", "10.0.0.51"),))
    assert str(allocate(pooled, 4, [ipaddress.ip_address("10.0.0.50")])) == "10.0.0.51"
    with pytest.raises(Conflict):
        allocate(net("10.0.0.0/24"), 6, [])


def test_static_addresses_are_checked() -> None:
    spec = net("10.0.0.0/24", "fd00::/64", gateways=("10.0.0.1",))
    check_static(spec, ipaddress.ip_address("10.0.0.9"), [])
    with pytest.raises(Conflict, match="already assigned"):
        check_static(spec, ipaddress.ip_address("10.0.0.9"), [ipaddress.ip_address("10.0.0.9")])
    with pytest.raises(InvalidInput, match="not in network"):
        check_static(spec, ipaddress.ip_address("10.9.0.9"), [])
    for reserved in ("10.0.0.1", "10.0.0.0", "10.0.0.255"):
        with pytest.raises(InvalidInput, match="reserved"):
            check_static(spec, ipaddress.ip_address(reserved), [])
    routed = net(type_=NetworkType.ROUTED)
    check_static(routed, ipaddress.ip_address("198.51.100.7"), [])


def test_macs_are_local_unicast_and_normalised() -> None:
    mac = generate_mac([])
    first = int(mac.split(":")[0], 16)
    assert first & 2 and not first & 1
    assert normalise_mac("02-C0-00-00-00-01") == "02:c0:00:00:00:01"
    for bad in ("01:00:5e:00:00:01", "00:00:00:00:00:00", "zz:00:00:00:00:01", "02:c0"):
        with pytest.raises(InvalidInput):
            normalise_mac(bad)


def test_device_names_fit_the_kernel_limit() -> None:
    assert nic_ifname(101, 15) == "c101n15"
    assert len(nic_ifname(9_999_999_999, 15)) <= 15
    nic = NicSpec(101, 3, net("10.0.0.0/24"), "02:c0:00:00:00:01",
                  (ipaddress.ip_address("10.0.0.5"),))
    assert nic.guest_ifname == "eth3"
    assert nic.prefix_of(nic.addresses[0]) == 24
